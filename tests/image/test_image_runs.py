"""The built worker image runs: packages import, entrypoints import, non-root, worker entrypoint."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest

from deploy_tools.image.build import BuildResult

Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_build_prints_a_digest_reference(worker_image: BuildResult) -> None:
    assert re.fullmatch(r"airnub-worker@sha256:[0-9a-f]{64}", worker_image.ref)


def test_imports_the_three_packages(run_in_image: Run) -> None:
    proc = run_in_image(
        "python", "-c",
        "import pipeline_core, flows_alpha, deploy_tools, prefect_aws, prefect_docker;"
        "print(pipeline_core.__file__)",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("/opt/venv/lib/python3.11/site-packages/pipeline_core/")


def test_check_entrypoints_inside_the_image(run_in_image: Run) -> None:
    proc = run_in_image("airnub", "check", "entrypoints")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "import" in proc.stdout


def test_runs_as_non_root_in_app(run_in_image: Run) -> None:
    proc = run_in_image("sh", "-c", 'id -u; id -g; pwd; echo "$HOME"')
    assert proc.returncode == 0, proc.stderr
    uid, gid, cwd, home = proc.stdout.split()
    assert uid != "0"
    assert gid != "0"
    assert (uid, gid, cwd, home) == ("10001", "10001", "/app", "/home/airnub")
    # HOME (and PREFECT_HOME under it) and the data root /app/data writable; the venv and the
    # rest of /app are not.
    proc = run_in_image(
        "sh", "-c",
        'touch "$PREFECT_HOME/x" /app/data/x && ! touch /opt/venv/x 2>/dev/null'
        ' && ! touch /app/x 2>/dev/null && echo ok',
    )  # fmt: skip
    assert proc.stdout.strip() == "ok", proc.stderr


def test_default_command_is_the_worker(run_in_image: Run) -> None:
    # Options only ⇒ `prefect worker start <options>`; --help exits without a server.
    proc = run_in_image("--help")
    assert proc.returncode == 0, proc.stderr
    assert "prefect worker start" in proc.stdout


def test_flow_run_commands_run_as_given(run_in_image: Run) -> None:
    # What a Docker work pool sets as the container command must run unchanged.
    proc = run_in_image("prefect", "flow-run", "execute", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "flow-run" in proc.stdout.lower() or "execute" in proc.stdout.lower()
