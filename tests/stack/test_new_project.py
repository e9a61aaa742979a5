"""A second project without touching the core: `airnub new project beta`, then deploy:local.

In a git copy of this checkout: scaffold `beta` with the real CLI, build the copy's own
environment from its updated lock (`uv sync --frozen`), run `airnub deploy local --mode
process` there (one server, one worker, both projects' demo pipelines to Completed, each
under its own data root), and check that git sees no change under the generic packages and
that the new package's wheel builds bit-identically twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from tests.checkout import git_copy, run

pytestmark = pytest.mark.stack

AIRNUB = Path(sys.executable).parent / "airnub"


def wheel_digest(repo: Path, out: Path) -> str:
    uv = shutil.which("uv")
    assert uv, "uv is needed (CI installs it)"
    run(
        [uv, "build", "--package", "airnub-flows-beta", "--wheel", "--out-dir", str(out)],
        repo,
        SOURCE_DATE_EPOCH="1700000000",
    )
    (wheel,) = out.glob("*.whl")
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_new_project_deploys_beside_alpha_without_touching_the_core(tmp_path: Path) -> None:
    from tests.stack.test_local_stack import free_port

    repo = git_copy(tmp_path / "repo")
    out = run([str(AIRNUB), "new", "project", "beta"], repo, timeout=300)
    assert "Project 'beta' created" in out

    changed = run(["git", "status", "--porcelain"], repo).splitlines()
    assert sorted(changed) == [  # a project is a folder: no shared file but the lock changes
        " M uv.lock",
        "?? deploy/projects/beta/",
        "?? packages/flows_beta/",
    ]
    assert (
        run(
            ["git", "diff", "--stat", "--", "packages/pipeline_core", "packages/deploy_tools"], repo
        )
        == ""
    )

    uv = shutil.which("uv")
    assert uv
    run([uv, "sync", "--frozen", "--all-packages", "--all-extras", "--quiet"], repo, timeout=900)
    airnub = repo / ".venv" / "bin" / "airnub"
    server, data = free_port(), free_port()
    try:
        out = run(
            [
                str(airnub),
                "deploy",
                "local",
                "--mode",
                "process",
                "--server-port",
                str(server),
                "--data-port",
                str(data),
            ],
            repo,
            timeout=900,
        )
        assert "alpha_pipeline/local" in out and "beta_pipeline/local" in out
        runs = httpx.post(
            f"http://127.0.0.1:{server}/api/flow_runs/filter", json={"limit": 50}, timeout=30
        ).json()
        names = {
            f["id"]: f["name"]
            for f in httpx.post(
                f"http://127.0.0.1:{server}/api/flows/filter", json={}, timeout=30
            ).json()
        }
        states = {(names[r["flow_id"]], r["state_type"]) for r in runs}
        for flow in ("alpha_pipeline", "beta_pipeline", "beta_ingest", "beta_process"):
            assert (flow, "COMPLETED") in states, states
    finally:
        run([str(airnub), "stack", "down"], repo, timeout=120)

    beta_root = repo / "data" / "project_beta_outputs"
    summary = json.loads((beta_root / "processed" / "summary.json").read_text())
    assert (summary["totals"]["rows_in"], summary["totals"]["rows_out"]) == (3, 2)
    assert (repo / "data" / "project_alpha_demo_outputs" / "processed" / "summary.json").is_file()
    assert "Outputs beta" in out and str(beta_root) in out

    # Still nothing changed under the generic packages after a real deploy.
    assert (
        run(
            [
                "git",
                "status",
                "--porcelain",
                "--",
                "packages/pipeline_core",
                "packages/deploy_tools",
            ],
            repo,
        )
        == ""
    )

    first = wheel_digest(repo, tmp_path / "wheel-a")
    os.utime(repo / "packages/flows_beta/src/flows_beta/flows.py")  # a fresh mtime
    assert wheel_digest(repo, tmp_path / "wheel-b") == first
