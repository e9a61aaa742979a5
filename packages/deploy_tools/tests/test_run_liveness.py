"""Which flow runs are live (`deploy_tools.local.runs`), with real processes and no server.

A run is live only while a process of this checkout (its `PREFECT_HOME`) carries the run's id:
a live PID that belongs to something else (a reused PID) does not count, nor does a zombie.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.objects import FlowRun, StateType

from deploy_tools.local.runs import FlowRunProcess, flow_run_processes, sort_runs, stop_process

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]
# Ignores SIGTERM and starts a grandchild in its own group: only SIGKILL of the group ends both.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _flow_run(home: Path, run_id: UUID, procs: list[subprocess.Popen[bytes]]) -> int:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT__FLOW_RUN_ID": str(run_id)}
    proc = subprocess.Popen(SLEEP, env=env, start_new_session=True)
    procs.append(proc)
    return proc.pid


def _run(state: str, infrastructure_pid: str | None = None) -> FlowRun:
    return FlowRun(
        flow_id=uuid4(), state_type=StateType(state), infrastructure_pid=infrastructure_pid
    )


def test_a_flow_run_process_of_this_checkout_is_found_by_its_run_id(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    ours, theirs = uuid4(), uuid4()
    pid = _flow_run(tmp_path / "prefect", ours, started)
    _flow_run(tmp_path / "other-checkout", theirs, started)
    deadline = time.monotonic() + 10
    while ours not in flow_run_processes(tmp_path / "prefect") and time.monotonic() < deadline:
        time.sleep(0.05)  # the environ is readable once exec is done
    found = flow_run_processes(tmp_path / "prefect")
    assert found == {ours: FlowRunProcess(pid, os.getpid())}  # the other checkout's is not ours

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Path(f"/proc/{pid}").exists()  # a zombie (not reaped yet) ...
    assert flow_run_processes(tmp_path / "prefect") == {}  # ... is no live process


def test_a_reused_pid_does_not_make_a_run_live() -> None:
    me = str(os.getpid())  # alive, but not a flow run
    reused, gone = _run("RUNNING", me), _run("RUNNING", "999999999")
    found = sort_runs([reused, gone], {}, worker_alive=True)
    assert found.live == [] and found.dead == [reused, gone]


def test_a_run_without_a_pid_is_live_only_while_a_worker_submits_it() -> None:
    pending = _run("PENDING")
    assert sort_runs([pending], {}, worker_alive=True).live == [(pending, None)]
    assert sort_runs([pending], {}, worker_alive=False).dead == [pending]


def test_a_run_with_its_process_is_live_and_without_proc_a_live_pid_counts() -> None:
    run = _run("RUNNING", "1234")
    proc = FlowRunProcess(1234, 1)
    assert sort_runs([run], {run.id: proc}, worker_alive=False).live == [(run, proc)]
    mine = _run("RUNNING", str(os.getpid()))
    found = sort_runs([mine], {}, worker_alive=False, proc_readable=False)
    assert found.live == [(mine, None)]  # no /proc (macOS): cannot tell better, never kill it


def test_stop_process_kills_a_group_that_ignores_sigterm(
    started: list[subprocess.Popen[bytes]],
) -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, start_new_session=True
    )
    started.append(leader)
    assert leader.stdout is not None
    grandchild = int(leader.stdout.readline())
    began = time.monotonic()
    stop_process(FlowRunProcess(leader.pid, os.getpid()), timeout=1.0)
    assert not _alive(leader.pid)
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)  # the whole group went
    assert 1.0 <= time.monotonic() - began < 10  # SIGTERM first, SIGKILL after the timeout
