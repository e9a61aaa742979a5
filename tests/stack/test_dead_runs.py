"""No run outlives its process unmarked (issue 20), on a real process stack.

The project of `test_stack_safety` (a copy of this checkout's deploy/ and [tool.airnub], plus the
`sleeper` fixture deployment), and a slow source served from this test on 127.0.0.1 (4 MiB over
~20 s), so an alpha ingest is mid-download, with a `.part` temp file, when its processes are
killed. In order: the worker killed with its flow-run child, then the worker killed alone (its
child is orphaned and keeps running); each time one `deploy local` ends the run Crashed, with
why, leaves no `.part`, and its demo run completes. Then `stack down` with a live run and a dead
one: only the live one is Cancelled. In between, with the worker alive, only old temp files
are swept. Each recovery's duration is printed (`-s` shows it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compose.slow_server import Slow
from tests.stack import test_stack_safety
from tests.stack.test_stack_safety import (
    HOUR,
    Project,
    _part_file,
    _running_sleeper,
    _wait_for,
    processes_under,
)

pytestmark = pytest.mark.stack
project = test_stack_safety.project  # its module-scoped stack project: one for this module too


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slow.csv"
    finally:
        server.shutdown()
        server.server_close()


def _parts(p: Project) -> list[Path]:
    return list(p.data_root.rglob("*.part"))


def _deploy_local(p: Project) -> tuple[str, float]:
    """`deploy local --mode process` (with its demo run); its output and how long it took."""
    ports = ["--server-port", str(p.server_port), "--data-port", str(p.data_port)]
    started = time.monotonic()
    done = p.cli("deploy", "local", "--mode", "process", *ports, timeout=600)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr, took


def _run(p: Project, run_id: str) -> dict[str, Any]:
    (run,) = p.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    return dict(run)


def _slow_ingest(p: Project, slow_url: str) -> tuple[dict[str, Any], int]:
    """Start an alpha ingest of the slow source; return the run and its process once the
    download writes its `.part` file."""
    (dep,) = p.post(
        "/deployments/filter",
        {
            "deployments": {"name": {"any_": ["local"]}},
            "flows": {"name": {"any_": ["alpha_ingest"]}},
        },
    )
    sources = [{"name": "slow", "url": slow_url, "format": "csv"}]
    run = p.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": {"sources": sources}})
    _wait_for("the slow download's .part file", lambda: _parts(p))
    pid = _wait_for(
        "the run's infrastructure_pid", lambda: _run(p, run["id"])["infrastructure_pid"]
    )
    return dict(run), int(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_worker_killed_with_its_child_the_run_ends_crashed(project: Project, slow_url: str) -> None:
    p = project
    out, took = _deploy_local(p)  # the first deploy: the stack and every deployment
    print(f"\nfirst deploy local: {took:.1f} s")
    run, child = _slow_ingest(p, slow_url)
    worker = p.tracked()["worker"]
    assert _parent(child) == worker
    os.killpg(worker, signal.SIGKILL)  # as an OOM kill: the worker's group, and the child's own
    os.killpg(child, signal.SIGKILL)
    _wait_for("the worker and its child to die", lambda: not _alive(worker) and not _alive(child))
    assert _run(p, run["id"])["state_type"] == "RUNNING"  # nothing told the server

    out, took = _deploy_local(p)
    print(f"recovery (worker + child killed): deploy local {took:.1f} s")
    ended = _run(p, run["id"])
    assert ended["state_type"] == "CRASHED", ended["state"]
    message = ended["state"]["message"]
    assert message == (
        "its process is gone (worker killed?) while RUNNING; found by airnub deploy local"
    )
    assert f"flow run {run['name']}: RUNNING → Crashed ({message})" in out
    assert _parts(p) == []
    assert "removed 1 stale temp file(s) of interrupted runs" in out
    assert "alpha_pipeline/local: run " in out and " Completed — " in out


def test_worker_killed_alone_its_orphan_is_stopped_and_crashed(
    project: Project, slow_url: str
) -> None:
    p = project
    run, child = _slow_ingest(p, slow_url)
    worker = p.tracked()["worker"]
    os.kill(worker, signal.SIGKILL)  # the worker alone
    _wait_for("the worker to die", lambda: not _alive(worker))
    time.sleep(1)
    # Its flow-run child lives on, re-parented, in its own process group: an orphan.
    assert _alive(child) and _parent(child) != worker
    assert os.getpgid(child) == child

    out, took = _deploy_local(p)
    print(f"recovery (worker killed alone): deploy local {took:.1f} s")
    assert not _alive(child)
    ended = _run(p, run["id"])
    assert ended["state_type"] == "CRASHED", ended["state"]
    message = ended["state"]["message"]
    assert message == (
        "its worker was gone while RUNNING, so nothing could cancel or watch it; "
        f"airnub deploy local stopped its process (pid {child})"
    )
    assert f"flow run {run['name']}: RUNNING → Crashed ({message})" in out
    assert _parts(p) == []
    assert " Completed — " in out


def test_with_a_live_worker_only_old_temp_files_are_swept(project: Project) -> None:
    p = project
    assert "worker" in p.tracked()  # from the deploy local before: a writer may exist
    old = _part_file(p.data_root / "raw" / "x", 2 * HOUR)
    young = _part_file(p.data_root / "raw" / "x", 60)
    ports = ["--server-port", str(p.server_port), "--data-port", str(p.data_port)]
    done = p.cli("deploy", "local", "--mode", "process", "--no-demo", *ports)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not old.exists() and young.exists()
    assert f"removed 1 stale temp file(s) of interrupted runs under {p.data_root}" in done.stdout


def test_down_cancels_the_run_it_stops_and_crashes_a_dead_one(project: Project) -> None:
    p = project
    applied = p.cli("setup", "apply", "--file", "sleeper.yaml")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    live = _running_sleeper(p)
    # A dead run: RUNNING on the server, its recorded PID alive but another process (this one):
    # a reused PID must not pass for the run.
    (dep,) = p.post(
        "/deployments/filter",
        {"deployments": {"name": {"any_": ["local"]}}, "flows": {"name": {"any_": ["sleeper"]}}},
    )
    dead = p.post(
        f"/deployments/{dep['id']}/create_flow_run",
        {"state": {"type": "RUNNING", "name": "Running"}},
    )
    httpx.patch(
        f"{p.api}/flow_runs/{dead['id']}", json={"infrastructure_pid": str(os.getpid())}, timeout=10
    ).raise_for_status()
    part = _part_file(p.data_root / "raw" / "x", 0)  # young: only a sweep at age 0 removes it

    started = time.monotonic()
    down = p.cli("stack", "down")
    took = time.monotonic() - started
    print(f"\ndown with a live and a dead run: {took:.1f} s")
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"flow run {live['name']}: RUNNING → Cancelled (stopped by deploy:down)" in down.stdout
    gone = "its process is gone (worker killed?) while RUNNING; found by deploy:down"
    assert f"flow run {dead['name']}: RUNNING → Crashed ({gone})" in down.stdout
    assert processes_under(p.root) == {}
    assert not part.exists()

    up = p.cli("stack", "up", "--mode", "process")
    assert up.returncode == 0, up.stdout + up.stderr
    assert _run(p, live["id"])["state_type"] == "CANCELLED"
    (nap,) = p.post("/flow_runs/filter", {"flows": {"name": {"any_": ["nap"]}}})
    assert nap["state_type"] == "CANCELLED", nap["state"]
    crashed = _run(p, dead["id"])
    assert crashed["state_type"] == "CRASHED" and crashed["state"]["message"] == gone
