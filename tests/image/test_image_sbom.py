"""/app/sbom.cdx.json in the built image: the file written beside the build, and the image's set."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from deploy_tools.image import sbom, wheelhouse
from deploy_tools.image.build import BuildResult, source_date_epoch
from deploy_tools.image.scan import LayerScan

Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_sbom_in_the_image_equals_the_generated_file(
    worker_image: BuildResult, run_in_image: Run, base_image: str, repo_root: Path
) -> None:
    assert worker_image.sbom is not None
    beside = worker_image.sbom.read_bytes()
    proc = subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "cat",
         worker_image.tag, "/app/sbom.cdx.json"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert proc.stdout == beside
    # ... and both are what the generator gives for this lock, interpreter and commit time.
    target = wheelhouse.probe_target(base_image)
    assert beside == sbom.generate(repo_root, target=target, epoch=source_date_epoch(repo_root))
    stat = run_in_image("stat", "-c", "%u:%g %a", "/app/sbom.cdx.json")
    assert stat.stdout.split() == ["0:0", "644"], stat.stdout + stat.stderr


def test_sbom_lists_exactly_the_installed_distributions(
    worker_image: BuildResult, layer_scan: LayerScan
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


def test_parity_script_reads_the_real_image_and_its_sbom(
    worker_image: BuildResult, repo_root: Path, tmp_path: Path
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
