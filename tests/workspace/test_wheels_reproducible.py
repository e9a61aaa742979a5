"""Every workspace member builds to byte-identical wheels and sdists twice in a row.

The second build runs from a copy whose files have fresh mtimes, so only
SOURCE_DATE_EPOCH (not the checkout time) may reach the archives.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lock_members() -> list[str]:
    """The packaged workspace members uv.lock records (``editable`` sources other than the
    root), as wheel file names spell them."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return sorted(
        p["name"].replace("-", "_")
        for p in lock["package"]
        if p["source"].get("editable", ".") != "."
    )


def build(src: Path, out: Path) -> dict[str, str]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    subprocess.run(
        [uv, "build", "--all-packages", "--out-dir", str(out), "--quiet"],
        cwd=src,
        env=env,
        check=True,
    )
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def copy_tree(dest: Path) -> Path:
    """The committed-relevant part of the repo, with new mtimes (copy, not copy2)."""
    shutil.copytree(
        ROOT,
        dest,
        copy_function=shutil.copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".local", "data", "__pycache__", "*.pyc", "dist", ".image"
        ),
    )
    return dest


def test_wheels_and_sdists_are_bit_reproducible(tmp_path: Path) -> None:
    first = build(copy_tree(tmp_path / "a"), tmp_path / "out-a")
    second = build(copy_tree(tmp_path / "b"), tmp_path / "out-b")
    wheels = sorted(n for n in first if n.endswith(".whl"))
    members = lock_members()
    assert len(members) >= 3
    assert [w.split("-")[0] for w in wheels] == members
    assert len([n for n in first if n.endswith(".tar.gz")]) == len(members)
    assert first == second
