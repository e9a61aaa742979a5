"""deploy_tools declares every third-party package it imports and imports no flows package."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PACKAGE = Path(__file__).resolve().parents[1]
SOURCE = PACKAGE / "src" / "deploy_tools"


def _imported_top_level() -> dict[str, str]:
    """Top-level module -> first file importing it, over every module of deploy_tools."""
    found: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(PACKAGE)))
    return found


def _workspace_packages() -> dict[str, list[str]]:
    """Import name -> distribution of each workspace member (editable installs list no files)."""
    found: dict[str, list[str]] = {}
    for pyproject in sorted(PACKAGE.parent.glob("*/pyproject.toml")):
        dist = tomllib.loads(pyproject.read_text())["project"]["name"]
        for pkg in sorted((pyproject.parent / "src").glob("*/__init__.py")):
            found.setdefault(pkg.parent.name, []).append(dist)
    return found


def test_every_third_party_import_is_declared() -> None:
    declared = {
        canonicalize_name(Requirement(r).name)
        for r in tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    dists = {**_workspace_packages(), **packages_distributions()}
    missing = []
    for module, where in _imported_top_level().items():
        if module in sys.stdlib_module_names or module == "deploy_tools":
            continue
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        if not owners & declared:
            missing.append(f"{module} ({where}; from {sorted(owners) or 'nothing installed'})")
    assert missing == []


def test_no_flows_package_is_imported_by_name() -> None:
    flows = {m: w for m, w in _imported_top_level().items() if m.startswith("flows_")}
    assert flows == {}
