"""Offline checks of flake.nix and flake.lock (real inputs, nothing fetched)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Flake

pytestmark = pytest.mark.nix

REPO_ROOT = Path(__file__).resolve().parents[2]


def _nix_files() -> list[Path]:
    return [REPO_ROOT / "flake.nix", *sorted((REPO_ROOT / "nix").rglob("*.nix"))]


@pytest.mark.parametrize("path", _nix_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_nix_file_parses(nix_cli: str, path: Path) -> None:
    proc = subprocess.run(
        ["nix-instantiate", "--parse", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_lock_is_complete_and_matches_flake_nix_offline(
    flake: Flake, flake_input_names: list[str]
) -> None:
    """`nix flake metadata --no-update-lock-file` fails if any input would need (re)locking."""
    before = (REPO_ROOT / "flake.lock").read_bytes()
    meta = json.loads(flake.run("flake", "metadata", "--json", "--no-update-lock-file"))
    assert (REPO_ROOT / "flake.lock").read_bytes() == before
    root_inputs = meta["locks"]["nodes"]["root"]["inputs"]
    assert sorted(root_inputs) == sorted(flake_input_names)


def test_lock_has_one_pinned_github_node_per_repository(flake_input_names: list[str]) -> None:
    lock = json.loads((REPO_ROOT / "flake.lock").read_text())
    nodes = {name: node for name, node in lock["nodes"].items() if name != lock["root"]}
    assert sorted(nodes) == sorted(flake_input_names)
    repos = [(n["locked"]["owner"], n["locked"]["repo"]) for n in nodes.values()]
    assert len(set(repos)) == len(repos)
    for name, node in nodes.items():
        # A lock written while an input was overridden would hold a `path` node.
        assert node["locked"]["type"] == "github", name
        assert len(node["locked"]["rev"]) == 40, name
        assert node["locked"]["narHash"].startswith("sha256-"), name
        # Every sub-input follows a root input (lists), never a node of its own.
        for sub, target in node.get("inputs", {}).items():
            assert isinstance(target, list), f"{name}/{sub} is not a follows"
