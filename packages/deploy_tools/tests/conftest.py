"""The fixture checkout every deploy_tools test works on, instead of this repository's files.

`fixtures/checkout/` is a small checkout of its own: a root `pyproject.toml` (a uv workspace
with a shared `[tool.airnub]` table), `deploy/work_pools/`, and two member projects
(`packages/fixture_alpha`: project `alpha`, pipeline-like, with a data root and demo data;
`packages/fixture_beta`: project `beta`, one plain flow, no data root and no remote file) with
their `deploy/projects/<name>/` files. Their flows are modules of the fixture
(`airnub_fixture_alpha`, `airnub_fixture_beta`), importable while a test uses the copy.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "checkout"
# The fixture's top-level modules: forgotten around each test, so each imports its own copy.
FIXTURE_MODULES = ("airnub_fixture_alpha", "airnub_fixture_beta")


def _forget_fixture_modules() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in FIXTURE_MODULES]:
        del sys.modules[name]


@pytest.fixture
def make_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Path]]:
    """`make_checkout(folder)`: a copy of the fixture checkout at `tmp_path/folder` (`"."`:
    `tmp_path` itself), its members' sources on `sys.path`, and no `AIRNUB_*` setting of the
    caller's environment."""
    for name in [k for k in os.environ if k.startswith("AIRNUB_")]:
        monkeypatch.delenv(name)

    def make(folder: str = "checkout") -> Path:
        root = (tmp_path / folder).resolve()
        shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
        for src in sorted(root.glob("packages/*/src")):
            monkeypatch.syspath_prepend(str(src))
        _forget_fixture_modules()
        return root

    yield make
    _forget_fixture_modules()


@pytest.fixture
def checkout(make_checkout: Callable[[str], Path]) -> Path:
    """A copy of the fixture checkout to read and edit (see the module docstring)."""
    return make_checkout("checkout")
