"""Tests of this project's own CI scripts under ci/ (not shipped: no package imports them)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_ci_script(name: str) -> ModuleType:
    """Import ``ci/<name>.py`` (a stdlib-only script, run before any venv exists) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "ci" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module
