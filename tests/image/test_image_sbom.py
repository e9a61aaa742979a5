"""/app/sbom.cdx.json in the built image: the file written beside the build, and the image's set."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from deploy_tools.image import sbom
from deploy_tools.image.build import BuildResult
from tests.image.scan import LayerScan

Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_sbom_in_the_image_equals_the_generated_file(
    worker_image: BuildResult, run_in_image: Run, repo_root: Path
) -> None:
    assert worker_image.sbom is not None
    beside = worker_image.sbom.read_bytes()
    proc = subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "cat",
         worker_image.tag, "/app/sbom.cdx.json"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert proc.stdout == beside
    # ... and both are what the generator writes again, in the image, of its venv and uv.lock.
    again = subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--network", "none",
         "-v", f"{repo_root / 'uv.lock'}:/tmp/uv.lock:ro", "--entrypoint", "python",
         worker_image.tag, "-m", "deploy_tools.image.sbom", "--lock", "/tmp/uv.lock",
         "--venv", "/opt/venv"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert again.stdout == beside
    # `hatch run image:sbom` prints the built image's file.
    cli = subprocess.run(
        [sys.executable, "-c", "from deploy_tools.cli import main; main()",
         "image", "sbom", "--image", worker_image.tag],
        capture_output=True, check=True,
    )  # fmt: skip
    assert cli.stdout == beside
    stat = run_in_image("stat", "-c", "%u:%g %a", "/app/sbom.cdx.json")
    assert stat.stdout.split() == ["0:0", "644"], stat.stdout + stat.stderr


def test_sbom_lists_exactly_the_installed_distributions(
    worker_image: BuildResult, layer_scan: LayerScan, workspace_members: dict[str, list[str]]
) -> None:
    assert worker_image.sbom is not None
    data = json.loads(worker_image.sbom.read_bytes())
    listed = {canonicalize_name(c["name"]): Version(c["version"]) for c in data["components"]}
    installed = {
        canonicalize_name(m.group(1)): Version(m.group(2))
        for p in layer_scan.paths
        if p.startswith("opt/venv/")
        and (m := re.search(r"site-packages/([^/]+?)-([^/-]+)\.dist-info/?$", p))
    }
    assert "prefect" in installed
    assert listed == installed
    marked = {
        c["name"]
        for c in data["components"]
        if any(p["name"] == sbom.WORKSPACE_PROPERTY for p in c.get("properties", []))
    }
    assert marked == set(workspace_members)


def test_every_third_party_component_is_the_locked_wheel(
    worker_image: BuildResult, repo_root: Path, workspace_members: dict[str, list[str]]
) -> None:
    """The image installs locked wheels only: each third-party component names one, with the
    sha256 uv.lock records for that wheel of that version."""
    assert worker_image.sbom is not None
    data = json.loads(worker_image.sbom.read_bytes())
    lock = tomllib.loads((repo_root / "uv.lock").read_text())
    wheels = {
        (canonicalize_name(p["name"]), p["version"], w["url"]): w["hash"].removeprefix("sha256:")
        for p in lock["package"]
        for w in p.get("wheels", [])
    }
    third_party = [c for c in data["components"] if c["name"] not in workspace_members]
    assert len(third_party) > 100
    for c in third_party:
        [ref] = c["externalReferences"]
        assert ref["url"].endswith(".whl"), c["name"]
        digest = wheels[(c["name"], c["version"], ref["url"])]
        assert c["hashes"] == ref["hashes"] == [{"alg": "SHA-256", "content": digest}]


def test_parity_script_reads_the_real_image_and_its_sbom(
    worker_image: BuildResult,
    repo_root: Path,
    tmp_path: Path,
    workspace_members: dict[str, list[str]],
) -> None:
    """ci/compare_images.py (the GitHub parity job) on this image: as `docker save` archive
    and as `docker image inspect` + `docker export`, no difference, the SBOM = the venv."""

    def docker(*args: str) -> str:
        return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout

    archive, inspect, export = tmp_path / "saved.tar", tmp_path / "inspect.json", tmp_path / "x.tar"
    docker("save", "-o", str(archive), worker_image.tag)
    inspect.write_text(docker("image", "inspect", worker_image.tag))
    container = docker("create", "--pull", "never", worker_image.tag).strip()
    try:
        docker("export", "-o", str(export), container)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    script = str(repo_root / "ci/compare_images.py")
    proc = subprocess.run(
        [sys.executable, script, str(archive), f"{inspect},{export}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert worker_image.sbom is not None
    listed = len(json.loads(worker_image.sbom.read_bytes())["components"])
    assert f"no difference: same config, {listed} distributions with the same versions" in (
        proc.stdout
    )
    # The workspace compared is the one the SBOM marks: every member.
    assert f" workspace files ({', '.join(sorted(workspace_members))})" in proc.stdout
