"""The GitHub Actions workflow (for users with network) is valid and runs what it promises.

Only its structure can be checked here (no runner, no registry); README's "Where each guarantee
is proved" says which job proves what.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
PINNED = re.compile(r"^v\d+\.\d+\.\d+$")


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return dict(workflow["jobs"])


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@")]


def test_ci_workflow_validates_against_the_github_workflow_schema() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_test_job_runs_ci_run_itself_with_every_test_required(jobs: dict[str, Any]) -> None:
    test = jobs["test"]
    runs = _runs(test)
    ci_run = (REPO_ROOT / ".ci/run").read_text()

    # One script: the job calls .ci/run and does not repeat what it does.
    assert re.search(r"\bbash \.ci/run$", runs, re.MULTILINE)
    assert "hatch test" not in runs
    assert "hatch check" not in runs
    for command in ("uv lock --check", "hatch check", "hatch test", "ci/provision-*.sh"):
        assert command in ci_run, command
    assert "export AIRNUB_REQUIRE_ALL=1" in ci_run
    assert test["env"]["AIRNUB_REQUIRE_ALL"] == "1"
    # What the tests need on a runner: Nix, Docker with the containerd store, the pinned images.
    assert _uses(test, "cachix/install-nix-action")
    assert "bash ci/github-docker.sh base postgres" in runs
    # .ci/run expects root (apt-get, /etc/nix), as on this project's CI machine.
    assert "sudo --preserve-env" in runs


def test_docker_images_are_built_with_one_pinned_buildx_and_buildkit(jobs: dict[str, Any]) -> None:
    job = jobs["docker-image"]
    runs = _runs(job)

    assert set(job["strategy"]["matrix"]["runner"]) == {"ubuntu-22.04", "ubuntu-24.04"}
    assert job["runs-on"] == "${{ matrix.runner }}"
    setups = {
        name: _uses(jobs[name], "docker/setup-buildx-action") for name in ("docker-image", "push")
    }
    versions = set()
    for name, steps in setups.items():
        assert len(steps) == 1, name
        options = steps[0]["with"]
        assert PINNED.match(options["version"]), options
        assert re.fullmatch(r"image=moby/buildkit:v\d+\.\d+\.\d+", options["driver-opts"]), options
        versions.add((options["version"], options["driver-opts"]))
    assert len(versions) == 1, "docker-image and push must use the same buildx and BuildKit"
    # The base pulled by the digest Dockerfile.worker pins, before the build; then airnub builds.
    steps = [str(s.get("run", s.get("uses", ""))) for s in job["steps"]]
    pull = next(i for i, s in enumerate(steps) if "ci/github-docker.sh base" in s)
    build = next(i for i, s in enumerate(steps) if "image:build" in s)
    assert pull < build
    assert "hatch run image:build" in runs  # = `airnub image build`
    uploads = [s["with"] for s in _uses(job, "actions/upload-artifact")]
    assert {
        "name": "docker-digest-${{ matrix.runner }}",
        "path": "docker-digest.txt\nbuildx.txt\n",
    } in uploads


def test_github_docker_pulls_exactly_the_pinned_references() -> None:
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "ci/github-docker.sh"), "--print", "base", "postgres"],
        capture_output=True,
        text=True,
        check=True,
    )
    refs = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    dockerfile = (REPO_ROOT / "Dockerfile.worker").read_text()
    from deploy_tools.settings import compose_postgres_image

    assert f"ARG BASE_IMAGE={refs['AIRNUB_BASE_IMAGE']}\n" in dockerfile
    assert refs["AIRNUB_POSTGRES_IMAGE"] == compose_postgres_image(
        REPO_ROOT / "deploy/compose.yaml"
    )
    assert all("@sha256:" in ref for ref in refs.values())


def test_digests_are_compared_across_runners(jobs: dict[str, Any]) -> None:
    compare = jobs["compare"]
    runs = _runs(compare)

    assert set(compare["needs"]) == {"docker-image", "nix-image"}
    for name in ("docker-digest", "nix-image-sha256"):
        assert name in runs
    assert 'test "${#files[@]}" -eq 2' in runs
    assert "sort -u" in runs


def test_the_nix_image_is_built_twice_and_compared(jobs: dict[str, Any]) -> None:
    job = jobs["nix-image"]
    runs = _runs(job)

    assert set(job["strategy"]["matrix"]["runner"]) == {"ubuntu-22.04", "ubuntu-24.04"}
    assert "nix build .#worker-image" in runs
    assert "nix build --rebuild" in runs
    assert 'test "$first" = "$second"' in runs
    assert "nix flake check" in runs
    assert "docker-archive:nix-image.tar" in runs


def test_docker_and_nix_images_are_compared_for_parity(jobs: dict[str, Any]) -> None:
    parity = jobs["parity"]
    downloads = {s["with"]["name"] for s in _uses(parity, "actions/download-artifact")}
    uploads = {
        s["with"]["name"]
        for name in ("docker-image", "nix-image")
        for s in _uses(jobs[name], "actions/upload-artifact")
    }

    assert set(parity["needs"]) == {"docker-image", "nix-image"}
    assert downloads == {"docker-image-archive", "nix-image-archive"}
    assert downloads <= uploads
    assert "python3 ci/compare_images.py archives/docker-image.tar archives/nix-image.tar" in _runs(
        parity
    )


def test_audit_runs_and_push_needs_every_check_and_main(jobs: dict[str, Any]) -> None:
    assert "hatch run image:audit" in _runs(jobs["audit"])
    assert "refs/heads/main" in jobs["push"]["if"]
    assert set(jobs["push"]["needs"]) == {"test", "compare", "parity", "audit"}
