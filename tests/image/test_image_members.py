"""A workspace member added under packages/ reaches the image with no build file edited.

One extra build, from a copy of this checkout with two members added the way
`airnub new project` adds one (a folder under packages/, then `uv lock`): a packaged one that
the root does not depend on, and a virtual one (`tool.uv.package = false`, nothing to install).
The copy keeps uv.lock's third-party set and commit time, so the dependency layer comes from
the build cache.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from deploy_tools.image import sbom
from deploy_tools.image.build import BuildOptions, BuildResult, build_image
from tests.checkout import git_copy
from tests.image.conftest import ROOT, built_members, lock_members
from tests.new_member import add_member, lock_and_commit

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TAG = "airnub-worker:pytest-members"


@pytest.fixture(scope="module")
def extended(
    base_image: str, tmp_path_factory: pytest.TempPathFactory, cleanup_images: list[str]
) -> tuple[BuildResult, Path, str, str]:
    """(the image built from the copy, the copy, the packaged member, the virtual member)."""
    tmp = tmp_path_factory.mktemp("members")
    copy = git_copy(tmp / "copy")
    added = add_member(copy, "flows_zeta")
    virtual = add_member(copy, "notes_zeta", virtual=True)
    lock_and_commit(copy, "add two workspace members")
    cleanup_images.append(TAG)
    opts = BuildOptions(
        project=copy, tag=TAG, base_image=base_image, context_dir=tmp / "context",
        wheel_cache=ROOT / ".image" / "wheelhouse", quiet=True, sbom_path=tmp / "sbom.cdx.json",
    )  # fmt: skip
    return build_image(opts), copy, added, virtual


def _run(tag: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "run", "--rm", "--pull", "never", "--network", "none", tag, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_the_added_member_is_built_installed_compiled_and_imports(
    extended: tuple[BuildResult, Path, str, str],
) -> None:
    image, copy, added, virtual = extended
    members = built_members(image.context)
    # Every packaged member of the copy's uv.lock is a wheel; the virtual one is in the lock only.
    assert set(members) == set(lock_members(copy))
    assert members[added] == ["flows_zeta"]
    lock = (copy / "uv.lock").read_text()
    assert f'name = "{virtual}"' in lock
    assert virtual not in members
    proc = _run(
        image.tag, "python", "-c",
        "import importlib.util, flows_zeta; print(flows_zeta.MARKER);"
        "print(importlib.util.cache_from_source(flows_zeta.__file__))",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    marker, pyc = proc.stdout.split()
    assert marker == added
    flags = _run(image.tag, "python", "-c", f"print(open('{pyc}', 'rb').read()[4:8].hex())")
    assert flags.stdout.strip() == "01000000", flags.stderr  # unchecked-hash, as every member


def test_the_sbom_lists_the_added_member_and_not_the_virtual_one(
    extended: tuple[BuildResult, Path, str, str],
) -> None:
    image, copy, added, virtual = extended
    assert image.sbom is not None
    data = json.loads(image.sbom.read_bytes())
    in_image = _run(image.tag, "cat", "/app/sbom.cdx.json")
    assert in_image.stdout.encode() == image.sbom.read_bytes()
    components = {c["name"]: c for c in data["components"]}
    assert components[added]["version"] == "0.3.0"
    assert components[added]["properties"] == [
        {"name": sbom.WORKSPACE_PROPERTY, "value": "packages/flows_zeta"}
    ]
    assert virtual not in components  # locked, not installed: not listed
    marked = {
        name
        for name, c in components.items()
        if any(p["name"] == sbom.WORKSPACE_PROPERTY for p in c.get("properties", []))
    }
    assert marked == set(lock_members(copy))
    # What the venv holds, no more, no fewer.
    proc = _run(
        image.tag, "python", "-c",
        "import importlib.metadata as md;"
        "print('\\n'.join(sorted(d.metadata['Name'] for d in md.distributions())))",
    )  # fmt: skip
    assert {str(canonicalize_name(n)) for n in proc.stdout.split()} == set(components)
