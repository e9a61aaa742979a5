"""Shared fixtures for the worker image tests: one real build per session, saved once.

Needs a Docker engine with buildx and the containerd image store (ci/provision-docker.sh) and a
base image already in the local store — tests never pull. Without them every test skips with
the reason; CI (AIRNUB_REQUIRE_ALL=1) turns that skip into a failure.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from deploy_tools.image.build import BuildOptions, BuildResult, build_image, image_present
from tests.image.scan import LayerScan, scan_archive

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "airnub/base:bookworm"
TAG = "airnub-worker:pytest"


@pytest.fixture(scope="session")
def base_image() -> str:
    """The offline base image (AIRNUB_BASE_IMAGE or the debootstrap one)."""
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"no Docker engine answers (run ci/provision-docker.sh): {proc.stderr[-200:]}")
    image = os.environ.get("AIRNUB_BASE_IMAGE", DEFAULT_BASE)
    if not image_present(image):
        pytest.skip(f"base image {image} not loaded (run ci/provision-docker.sh); tests never pull")
    return image


@pytest.fixture(scope="session")
def worker_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The worker image built once from this checkout, as `hatch run image:build` builds it."""
    ctx = tmp_path_factory.mktemp("image-context")
    opts = BuildOptions(
        project=ROOT, tag=TAG, base_image=base_image, context_dir=ctx / "context",
        wheel_cache=ROOT / ".image" / "wheelhouse", quiet=True,
        sbom_path=ctx / "sbom.cdx.json",
    )  # fmt: skip
    return build_image(opts)


RunInImage = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_in_image(worker_image: BuildResult) -> RunInImage:
    """`docker run --rm --network none <worker image> args...` (never pulls)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "run", "--rm", "--pull", "never", "--network", "none", worker_image.tag]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)

    return run


@pytest.fixture(scope="session")
def layer_scan(worker_image: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> LayerScan:
    """`docker save` the image once and scan every layer (paths and contents)."""
    archive = tmp_path_factory.mktemp("image-archive") / "image.tar"
    subprocess.run(["docker", "save", "-o", str(archive), worker_image.tag], check=True)
    scan = scan_archive(archive)
    archive.unlink()
    assert scan.manifest_digest == worker_image.digest
    return scan


@pytest.fixture(scope="session")
def base_layers(base_image: str) -> int:
    """How many layers come from the base image (the ones below ours)."""
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{len .RootFS.Layers}}", base_image],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return int(out)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def cleanup_images() -> Iterator[list[str]]:
    """Tags to remove at the end of the session."""
    tags: list[str] = []
    yield tags
    if tags:
        subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)


def lock_members(root: Path) -> dict[str, str]:
    """The packaged workspace members uv.lock records: name -> folder (``editable`` sources;
    the root and virtual members have no package)."""
    lock = tomllib.loads((root / "uv.lock").read_text())
    return {
        str(canonicalize_name(p["name"])): p["source"]["editable"]
        for p in lock["package"]
        if p["source"].get("editable", ".") != "."
    }


def wheel_modules(wheel: Path) -> list[str]:
    """The top-level packages and modules a wheel installs (from its RECORD)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {
        name.split("/", 1)[0] if "/" in name else name.removesuffix(".py")
        for name in names
        if name.endswith(".py") and ".dist-info/" not in name and ".data/" not in name
    }
    return sorted(tops)


def built_members(context: Path) -> dict[str, list[str]]:
    """Member name -> top-level modules, for every workspace wheel of a build context."""
    return {
        str(parse_wheel_filename(w.name)[0]): wheel_modules(w)
        for w in sorted((context / "wheels" / "workspace").glob("*.whl"))
    }


@pytest.fixture(scope="session")
def workspace_members(worker_image: BuildResult) -> dict[str, list[str]]:
    """Each workspace member the image installs -> its top-level modules: every member of
    uv.lock (nothing named here), each built as a wheel into the context."""
    members = built_members(worker_image.context)
    assert set(members) == set(lock_members(ROOT))
    assert all(members.values()), members
    return members
