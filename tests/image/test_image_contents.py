"""Layer scan of the saved worker image: only what the worker needs, nothing private."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from deploy_tools.image.build import BuildResult
from tests.image.scan import LayerScan

Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def _dev_only_names(root: Path) -> set[NormalizedName]:
    """Dev dependency-group names that are not runtime dependencies (from pyproject + uv.lock)."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    dev = {canonicalize_name(Requirement(r).name) for r in data["dependency-groups"]["dev"]}
    runtime = subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes",
         "--no-header", "--no-annotate"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    names = {
        canonicalize_name(re.split(r"[=;\s]", line)[0]) for line in runtime.splitlines() if line
    }
    return dev - names


def _modules(members: dict[str, list[str]]) -> list[str]:
    return sorted(m for modules in members.values() for m in modules)


def test_no_tests_in_our_layers(
    layer_scan: LayerScan, base_layers: int, workspace_members: dict[str, list[str]]
) -> None:
    # The base's own stdlib (Debian ships usr/lib/python3.11/test) is not ours to judge.
    ours = [p for p, layer in layer_scan.paths.items() if layer >= base_layers]
    assert any(p.startswith("opt/venv/") for p in ours)
    # deploy_tools' project templates hold a test *template* (.j2) for new projects: not a suite
    suites = [p for p in ours if re.search(r"(^|/)tests(/|$)", p)]
    assert [p for p in suites if "/deploy_tools/scaffold/templates/" not in p] == []
    assert all(p.endswith(("/tests", ".py.j2")) for p in suites)
    modules = "|".join(map(re.escape, _modules(workspace_members)))
    our_code = re.compile(rf"^(app/|opt/venv/lib/python[^/]+/site-packages/({modules})(/|\.py$))")
    ours_code = [p for p in ours if our_code.search(p)]
    for module in _modules(workspace_members):  # every member's code is there
        assert any(re.search(rf"site-packages/{module}(/.*)?\.py$", p) for p in ours_code), module
    assert [p for p in ours_code if re.search(r"(^|/)(conftest|test_[^/]*)\.py$", p)] == []


def test_the_workspace_layer_holds_the_members_and_the_sbom_only(
    layer_scan: LayerScan, workspace_members: dict[str, list[str]]
) -> None:
    """The top layer: what installing and compiling the workspace wheels wrote, and the SBOM.
    No third-party file compiled again (the dependency layer below keeps its own .pyc), no
    mount point of the build (/wheels, /tmp/uv.lock) left behind."""
    top = max(layer_scan.paths.values())
    layer = sorted(p.rstrip("/") for p, i in layer_scan.paths.items() if i == top)
    site = next(p for p in layer if re.fullmatch(r"opt/venv/lib/python3\.\d+/site-packages", p))
    infos = {canonicalize_name(n).replace("-", "_") for n in workspace_members}
    allowed = set(_modules(workspace_members))
    stray = []
    for path in layer:
        if path.startswith(site + "/"):
            first = path.removeprefix(site + "/").split("/", 1)[0]
            info = re.fullmatch(r"(.+?)-[^-]+\.dist-info", first)
            if first.removesuffix(".py") in allowed or (info and info.group(1) in infos):
                continue
            stray.append(path)
        elif not (site.startswith(path) or path.startswith("opt/venv/bin")):  # parents, scripts
            stray.append(path)
    assert set(stray) <= {"app", "app/sbom.cdx.json"}, stray
    assert "app/sbom.cdx.json" in stray
    assert not any(p.startswith(("wheels", "tmp/")) for p in layer)
    assert "wheels" not in layer_scan.paths and "wheels/" not in layer_scan.paths


def test_no_dev_dependencies(layer_scan: LayerScan, repo_root: Path) -> None:
    dev = _dev_only_names(repo_root)
    assert {"pytest", "ruff", "mypy"} <= dev
    dist_infos = {
        canonicalize_name(m.group(1))
        for p in layer_scan.paths
        if (m := re.search(r"site-packages/([^/]+?)-[^/-]+\.dist-info/?$", p))
    }
    assert "prefect" in dist_infos  # the scan sees the venv at all
    assert dist_infos & dev == set()
    assert "pip" not in dist_infos  # the installer venv stays in the build stage


def test_no_git_env_or_private_key(layer_scan: LayerScan) -> None:
    assert [p for p in layer_scan.paths if re.search(r"(^|/)\.git(/|$)", p)] == []
    assert [p for p in layer_scan.paths if re.search(r"(^|/)\.env$", p)] == []
    assert layer_scan.private_keys == []


def test_no_workspace_sources_or_caches(layer_scan: LayerScan) -> None:
    assert not any(p.startswith(("app/.venv", "app/tests")) for p in layer_scan.paths)
    # Of the members, only their pyproject.toml (a project's own [tool.airnub.project] table).
    packages = [p for p in layer_scan.paths if p.startswith("app/packages/")]
    assert packages and all(
        re.fullmatch(r"app/packages/[^/]+(/|/pyproject\.toml)?", p) for p in packages
    ), packages
    assert not any(
        re.search(r"(^|/)(\.pytest_cache|\.mypy_cache|\.ruff_cache|\.cache/pip)(/|$)", p)
        for p in layer_scan.paths
    )
    assert "app/pyproject.toml" in layer_scan.paths  # the [tool.airnub] table, for `airnub`
    # Only YAML under /app/deploy.
    deploy = [p for p in layer_scan.paths if p.startswith("app/deploy/") and not p.endswith("/")]
    files = [p for p in deploy if "." in p.rsplit("/", 1)[-1]]
    assert files
    assert all(p.endswith((".yaml", ".yml")) for p in files)


# For each distribution named: how many of the .py files its RECORD lists have a .pyc, out of
# how many, and the set of PEP 552 flags words of those .pyc files.
_PYC_REPORT = """
import importlib.metadata as md, importlib.util, json, os, sys
out = {}
for name in sys.argv[1:]:
    dist = md.distribution(name)
    py = [dist.locate_file(f) for f in dist.files if f.suffix == ".py"]
    pyc = [importlib.util.cache_from_source(str(p)) for p in py]
    have = [c for c in pyc if os.path.exists(c)]
    flags = sorted({int.from_bytes(open(c, "rb").read()[4:8], "little") for c in have})
    out[name] = [len(have), len(py), flags]
print(json.dumps(out))
"""


def test_bytecode_is_hash_based(run_in_image: Run, workspace_members: dict[str, list[str]]) -> None:
    """Every .py file of every member (its RECORD) has a hash-based .pyc: PEP 552 flags 1 or 3
    (0 would be timestamp-based, not deterministic)."""
    proc = run_in_image("python", "-c", _PYC_REPORT, *workspace_members)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == set(workspace_members)
    for name, (compiled, files, flags) in report.items():
        assert compiled == files > 0, name
        assert flags in ([1], [3]), name


def test_oci_labels_without_timestamps(worker_image: BuildResult, repo_root: Path) -> None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", worker_image.tag],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    labels = json.loads(proc.stdout)
    assert {"source", "revision", "version"} <= {
        k.removeprefix("org.opencontainers.image.") for k in labels
    }
    revision = labels["org.opencontainers.image.revision"]
    # The commit the image was built from (HEAD may have moved on since).
    known = subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=repo_root)
    assert known.returncode == 0, revision
    assert not any("created" in k or "date" in k for k in labels)
