"""No workspace package imports itself in a circle, and pipeline_core's core needs no Prefect.

Every module of `packages/*/src` is read with `ast`. Every import counts: at module level,
under `if TYPE_CHECKING:` and inside a function (a lazy import is a dependency all the same,
only a later one).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(ROOT.glob("packages/*/src"))
CORE = ROOT / "packages/pipeline_core/src"
PREFECT_SIDE = "pipeline_core.integrations.prefect"


def modules(src: Path) -> dict[str, Path]:
    """Module name -> file, for every module under `src`."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every absolute name `path` (module `name`) imports, anywhere in the file.

    `from a import b` gives both `a` and `a.b`: `b` may be a module.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x`, `from ..a import x`
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same source tree it imports."""
    found = modules(src)
    return {name: imports(name, path) & found.keys() - {name} for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """A shortest cycle through each module that is on one, each cycle listed once."""
    found = set()
    for start in graph:
        came_from: dict[str, str] = {}
        queue = deque([start])
        while queue and start not in came_from:
            here = queue.popleft()
            for there in sorted(graph[here]):
                if there not in came_from:
                    came_from[there] = here
                    queue.append(there)
        if start in came_from:
            cycle = [start]
            while (before := came_from[cycle[-1]]) != start:
                cycle.append(before)
            cycle.reverse()  # start -> ... -> the module importing start
            first = cycle.index(min(cycle))
            found.add(tuple(cycle[first:] + cycle[:first]))
    return [list(c) for c in sorted(found)]


@pytest.mark.parametrize("src", SOURCES, ids=lambda src: src.parent.name)
def test_no_import_cycle(src: Path) -> None:
    found = cycles(import_graph(src))
    assert not found, f"{src.parent.name} has import cycles:\n" + "\n".join(
        " -> ".join([*cycle, cycle[0]]) for cycle in found
    )


def test_the_cycle_finder_finds_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from .c import x\n")
    (pkg / "c.py").write_text("import pkg.a\nx = 1\n")
    assert cycles(import_graph(tmp_path)) == [["pkg.a", "pkg.b", "pkg.c"]]


def _core_modules() -> dict[str, Path]:
    found = modules(CORE)
    return {n: p for n, p in found.items() if not (n + ".").startswith(PREFECT_SIDE + ".")}


def _is_prefect(top: str) -> bool:
    return top == "prefect" or top.startswith("prefect_")  # prefect_aws, …


def test_only_the_prefect_integration_imports_prefect() -> None:
    offending = {
        name: sorted(i for i in imports(name, path) if _is_prefect(i.split(".")[0]))
        for name, path in _core_modules().items()
    }
    assert not {n: i for n, i in offending.items() if i}, offending


def test_the_core_imports_without_prefect() -> None:
    code = (
        "import importlib, sys\n"
        "sys.modules['prefect'] = None  # any import of prefect now fails\n"
        f"for name in {sorted(_core_modules())!r}:\n"
        "    importlib.import_module(name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# deploy_tools' layers (README "Layout"): the command line over the two use cases, which share
# only what lies below them (settings, reporting, prefect_api, setup, image).
DEPLOY_TOOLS = ROOT / "packages/deploy_tools/src"
LAYERS = {  # a module under the key imports nothing under the values
    "deploy_tools.local": ("deploy_tools.cli", "deploy_tools.remote", "deploy_tools.scaffold"),
    "deploy_tools.remote": ("deploy_tools.cli", "deploy_tools.local", "deploy_tools.scaffold"),
    "deploy_tools.setup": ("deploy_tools.cli", "deploy_tools.local", "deploy_tools.remote"),
    "deploy_tools.image": ("deploy_tools.cli", "deploy_tools.local", "deploy_tools.remote"),
    "deploy_tools.scaffold": ("deploy_tools.cli", "deploy_tools.local", "deploy_tools.remote"),
    "deploy_tools.settings": ("deploy_tools.",),
    "deploy_tools.reporting": ("deploy_tools.cli", "deploy_tools.local", "deploy_tools.remote"),
}


def test_deploy_tools_layers_only_import_downwards() -> None:
    graph = import_graph(DEPLOY_TOOLS)
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        for layer, forbidden in LAYERS.items()
        if module == layer or module.startswith(f"{layer}.")
        for target in sorted(targets)
        if target.startswith(forbidden)
    ]
    assert wrong == []
