"""Fixtures for the offline flake checks: the `nix` CLI and the flake with stubbed inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STUBS_DIR = Path(__file__).resolve().parent / "stubs"


@dataclass(frozen=True)
class Flake:
    """Runs `nix` against the repo's flake (as git sees it: tracked files only)."""

    root: Path
    overrides: tuple[str, ...] = ()

    def run(self, *args: str) -> str:
        """Run `nix <args> <overrides>` in the repo; return stdout, fail with stderr."""
        cmd = ["nix", *args, *self.overrides]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc.stdout

    def eval_json(self, attr: str, apply: str | None = None) -> Any:
        """`nix eval --json .#<attr>` (optionally `--apply <fn>`), decoded."""
        extra: Sequence[str] = ("--apply", apply) if apply else ()
        return json.loads(self.run("eval", "--json", f".#{attr}", *extra))


@pytest.fixture(scope="session")
def nix_cli() -> str:
    """Path of the `nix` CLI (ci/provision-nix.sh installs it)."""
    path = shutil.which("nix")
    if path is None:
        pytest.skip("nix is not installed (run ci/provision-nix.sh)")
    return path


@pytest.fixture(scope="session")
def flake_input_names(nix_cli: str) -> list[str]:
    """The input names declared in flake.nix (read by Nix itself)."""
    proc = subprocess.run(
        [
            "nix",
            "eval",
            "--impure",
            "--json",
            "--expr",
            f"builtins.attrNames (import {REPO_ROOT}/flake.nix).inputs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    names: list[str] = json.loads(proc.stdout)
    return names


@pytest.fixture(scope="session")
def flake(nix_cli: str) -> Flake:
    """The flake with its real, locked inputs (nothing may be fetched offline)."""
    return Flake(REPO_ROOT)


@pytest.fixture(scope="session")
def stubbed_flake(flake_input_names: list[str]) -> Flake:
    """The flake with every input replaced by a recording stub from tests/nix/stubs.

    `--no-write-lock-file` keeps the stub paths out of flake.lock.
    """
    overrides: list[str] = []
    for name in flake_input_names:
        stub = STUBS_DIR / name
        assert (stub / "flake.nix").is_file(), f"no stub flake for input {name!r}"
        overrides += ["--override-input", name, f"path:{stub}"]
    return Flake(REPO_ROOT, (*overrides, "--no-write-lock-file"))
