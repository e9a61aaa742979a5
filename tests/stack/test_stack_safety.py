"""The deploy service is safe to run twice and to stop mid-run (issue 10), on a real stack.

One temp project (a copy of deploy/ and of the root pyproject.toml with its [tool.airnub] table,
plus the `sleeper` fixture deployment on the local pool), tests in order: two `deploy local` at
once (one of each part, all tracked, temp files swept); `down` during a run (runs
Cancelled, nothing left); the server killed during `demo run` (one line, no traceback), then
`status` and `setup apply`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.checkout import copy_project
from tests.stack.test_local_stack import free_port, post_json

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
AIRNUB = Path(sys.executable).parent / "airnub"
HOUR = 3600


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}


@dataclass
class Project:
    root: Path
    server_port: int
    data_port: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/api"

    @property
    def data_root(self) -> Path:
        return self.root / "data" / "project_alpha_demo_outputs"

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AIRNUB), *args],
            cwd=self.root,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(AIRNUB), *args],
            cwd=self.root,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return post_json(f"{self.api}{path}", body)

    def tracked(self) -> dict[str, int]:
        """Part name → PID, from `.local/run/*.json`."""
        run = self.root / ".local" / "run"
        return {p.stem: json.loads(p.read_text())["pid"] for p in run.glob("*.json")}


def processes_under(root: Path) -> dict[int, tuple[int, str]]:
    """PID → (process group, command line) of live processes whose cwd is inside `root`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[0] != "Z" and (cwd == str(root) or cwd.startswith(f"{root}/")):
            found[int(entry.name)] = (int(fields[2]), cmdline)
    return found


def _part_file(folder: Path, age: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")  # as LocalStorage.stage
    os.close(fd)
    then = time.time() - age
    os.utime(name, (then, then))
    return Path(name)


def _wait_for(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("safety")
    copy_project(root)
    shutil.copytree(Path(__file__).parent / "fixture_flows", root / "fixture_flows")
    shutil.copy(root / "fixture_flows" / "sleeper.yaml", root / "deploy")
    p = Project(root, free_port(), free_port())
    try:
        yield p
    finally:
        p.cli("stack", "down")


def _running_sleeper(p: Project) -> dict[str, Any]:
    """Start a `sleeper/local` run through the API; return it once it and its subflow run."""
    (dep,) = p.post(
        "/deployments/filter",
        {"deployments": {"name": {"any_": ["local"]}}, "flows": {"name": {"any_": ["sleeper"]}}},
    )
    run = p.post(f"/deployments/{dep['id']}/create_flow_run", {})
    running = {"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}
    _wait_for(
        "the nap subflow to run",
        lambda: p.post("/flow_runs/filter", {**running, "flows": {"name": {"any_": ["nap"]}}}),
    )
    return dict(run)


def test_two_deploy_locals_at_once_leave_one_tracked_process_per_part(project: Project) -> None:
    p = project
    old = [_part_file(p.data_root, 2 * HOUR), _part_file(p.data_root / "raw" / "x", 3 * HOUR)]
    young = _part_file(p.data_root / "raw" / "x", 60)
    other = p.data_root / "notes.part"
    other.write_text("not ours")
    os.utime(other, (time.time() - 2 * HOUR,) * 2)

    ports = ["--server-port", str(p.server_port), "--data-port", str(p.data_port)]
    args = ("deploy", "local", "--mode", "process", "--no-demo", *ports)
    first, second = p.start(*args), p.start(*args)
    outs = [proc.communicate(timeout=600) for proc in (first, second)]
    for proc, (out, err) in zip((first, second), outs, strict=True):
        assert proc.returncode == 0, out + err
    # One of them waited for the other, and said whom it waited for.
    waited = [
        (out, other_proc.pid)
        for (out, _), other_proc in zip(outs, (second, first), strict=True)
        if "waiting for" in out
    ]
    assert len(waited) == 1, outs
    out, holder_pid = waited[0]
    assert f"waiting for deploy local (pid {holder_pid}) to finish…" in out

    tracked = p.tracked()
    assert set(tracked) == {"server", "worker", "demo-data"}
    procs = processes_under(p.root)
    # every process belongs to the process group of a tracked part (nothing untracked)...
    assert {pgid for pgid, _ in procs.values()} == set(tracked.values()), procs
    # ...and there is exactly one of each part
    cmdlines = [cmd for _, cmd in procs.values()]
    assert sum("prefect worker start" in c for c in cmdlines) == 1, cmdlines
    assert sum("prefect server start" in c for c in cmdlines) == 1, cmdlines
    assert sum("deploy_tools.local.stack.demo_data" in c for c in cmdlines) == 1, cmdlines

    # temp files of ours were swept, young ones too: no worker and no flow run was alive, so
    # nothing could be writing them (the age rule with a live worker: test_dead_runs.py); other
    # files stay
    assert not any(f.exists() for f in [*old, young])
    assert other.exists()
    assert (
        f"removed 3 stale temp file(s) of interrupted runs under {p.data_root}"
        in outs[0][0] + outs[1][0]
    )


def test_down_during_a_run_cancels_it_and_leaves_nothing(project: Project) -> None:
    p = project
    applied = p.cli("setup", "apply", "--file", "sleeper.yaml")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    run = _running_sleeper(p)

    down = p.cli("stack", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"flow run {run['name']}: RUNNING → Cancelled" in down.stdout
    assert "stopped: worker, demo-data, server" in down.stdout
    assert processes_under(p.root) == {}
    assert p.tracked() == {}

    up = p.cli("stack", "up", "--mode", "process")
    assert up.returncode == 0, up.stdout + up.stderr
    runs = p.post("/flow_runs/filter")
    by_flow = {
        f["id"]: f["name"]
        for f in p.post("/flows/filter", {"flows": {"id": {"any_": [r["flow_id"] for r in runs]}}})
    }
    interrupted = [r for r in runs if by_flow[r["flow_id"]] in ("sleeper", "nap")]
    assert len(interrupted) == 2  # the run and its subflow
    for r in interrupted:
        assert r["state_type"] == "CANCELLED", r["state"]
        assert "stopped by deploy:down" in r["state"]["message"]
    assert not [r for r in runs if r["state_type"] in ("RUNNING", "PENDING")]


def test_server_killed_during_demo_run_is_one_line(project: Project) -> None:
    p = project
    assert set(p.tracked()) == {"server", "worker", "demo-data"}  # from the previous test
    demo = p.start("demo", "run", "--deployment", "sleeper/local")
    try:
        _wait_for(
            "a RUNNING sleeper run",
            lambda: p.post(
                "/flow_runs/filter",
                {
                    "flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}},
                    "flows": {"name": {"any_": ["nap"]}},
                },
            ),
        )
        os.killpg(p.tracked()["server"], signal.SIGKILL)
        out, err = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 1
    assert "Traceback" not in out + err
    # the step's outcome, then the one error line
    assert len(err.strip().splitlines()) == 2, err
    step, error = err.strip().splitlines()
    assert step == "sleeper/local: the Prefect server stopped answering", err
    gone = f"error: the Prefect server at {p.api} stopped answering during the run of sleeper/local"
    assert error.startswith(f"{gone} ("), err

    status = p.cli("stack", "status")
    assert status.returncode == 1
    assert "Traceback" not in status.stdout + status.stderr
    assert status.stderr.strip() == (
        "error: the Prefect server is not running; start the stack with `airnub stack up`"
    )

    apply = p.cli("setup", "apply")
    assert apply.returncode == 1
    assert "Traceback" not in apply.stdout + apply.stderr
    assert len(apply.stderr.strip().splitlines()) == 1, apply.stderr
    assert "no Prefect server answers" in apply.stderr

    down = p.cli("stack", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped: worker, demo-data" in down.stdout
    assert processes_under(p.root) == {}
