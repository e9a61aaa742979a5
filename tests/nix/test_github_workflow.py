"""The GitHub Actions workflow (for users with network) is valid and runs what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "ci.yml"


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


def test_ci_workflow_builds_each_image_on_two_runners_and_pushes_only_from_main() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    steps = {
        name: " ".join(str(s.get("run", "")) for s in job["steps"]) for name, job in jobs.items()
    }

    assert "hatch test" in steps["test"]
    for job in ("docker-image", "nix-image"):
        assert len(set(jobs[job]["strategy"]["matrix"]["runner"])) == 2
    assert "nix build .#worker-image" in steps["nix-image"]
    assert "--rebuild" in steps["nix-image"]
    assert set(jobs["compare"]["needs"]) == {"docker-image", "nix-image"}
    assert "refs/heads/main" in jobs["push"]["if"]
    assert "compare" in jobs["push"]["needs"]
