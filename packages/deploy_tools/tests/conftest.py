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
from dataclasses import dataclass, field
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


@dataclass
class RecordingReporter:
    """A `Reporter` that keeps every call, in order, as `(kind, text)`."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def step_started(self, step: str, detail: str = "") -> None:
        self.calls.append(("started", step))

    def progress(self, step: str, detail: str) -> None:
        self.calls.append(("progress", f"{step}: {detail}"))

    def step_finished(self, step: str, detail: str = "", *, ok: bool = True) -> None:
        self.calls.append(("finished" if ok else "failed", f"{step}: {detail}"))

    def info(self, message: str) -> None:
        self.calls.append(("info", message))

    def failure(self, message: str) -> None:
        self.calls.append(("failure", message))

    def of(self, kind: str) -> list[str]:
        return [text for k, text in self.calls if k == kind]


@pytest.fixture
def reporter() -> RecordingReporter:
    """A fresh `RecordingReporter`."""
    return RecordingReporter()
