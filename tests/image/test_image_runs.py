"""The built worker image runs: packages import, entrypoints import, non-root, worker entrypoint."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy_tools.image.build import BuildResult
from tests.checkout import REPO

Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_build_prints_a_digest_reference(worker_image: BuildResult) -> None:
    assert re.fullmatch(r"airnub-worker@sha256:[0-9a-f]{64}", worker_image.ref)


def test_imports_every_workspace_member(
    run_in_image: Run, workspace_members: dict[str, list[str]]
) -> None:
    modules = sorted(m for ms in workspace_members.values() for m in ms)
    proc = run_in_image(
        "python", "-c",
        "import importlib, sys\n"
        "for m in sys.argv[1:]: print(m, importlib.import_module(m).__file__)",
        *modules, "prefect_aws", "prefect_docker",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    site = "/opt/venv/lib/python3.11/site-packages/"
    for module in modules:
        assert files[module] in (f"{site}{module}/__init__.py", f"{site}{module}.py"), module


def test_check_entrypoints_inside_the_image(run_in_image: Run) -> None:
    """`airnub` in the image finds every project (the members' tables are in /app/packages) and
    each entrypoint of their local and remote files imports there."""
    from deploy_tools.local.service import gate_files
    from deploy_tools.settings import load_settings

    settings = load_settings(REPO)
    expected = sum(
        len(yaml.safe_load(f.read_text()).get("deployments") or [])
        for f in gate_files(settings, remote=True)
    )
    assert expected > 0
    proc = run_in_image("airnub", "check", "entrypoints")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"all {expected} import as flows" in proc.stdout
    projects = run_in_image(
        "python", "-c",
        "from deploy_tools.settings import load_settings\n"
        "print(' '.join(p.name for p in load_settings().projects))",
    )  # fmt: skip
    assert projects.stdout.split() == [p.name for p in settings.projects], projects.stderr


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


def test_default_pool_is_one_the_deploy_files_define(
    worker_image: BuildResult, repo_root: Path
) -> None:
    """CMD's `--pool` names a work pool of deploy/work_pools/ (not a pool nothing creates)."""
    cmd = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Cmd}}", worker_image.tag],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    assert cmd[0] == "--pool"
    pools = {
        yaml.safe_load(p.read_text())["name"]
        for p in (repo_root / "deploy" / "work_pools").glob("*.yaml")
    }
    assert cmd[1] in pools, (cmd, pools)


def test_flow_run_commands_run_as_given(run_in_image: Run) -> None:
    # What a Docker work pool sets as the container command must run unchanged.
    proc = run_in_image("prefect", "flow-run", "execute", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "flow-run" in proc.stdout.lower() or "execute" in proc.stdout.lower()
