"""Background processes are stopped by their recorded PID, with everything they started."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from deploy_tools.local.stack.processes import ManagedProcess

# A parent that starts a grandchild in the same group, then waits: like a worker and its flow run.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("started:", child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _sig_ignored(pid: int, sig: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    raise AssertionError("no SigIgn line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs procfs")
def test_stop_ends_the_whole_group_even_when_the_parent_ignored_sigint(tmp_path: Path) -> None:
    proc = ManagedProcess("thing", tmp_path)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # like a script's `cmd &`
    try:
        pid = proc.start([sys.executable, "-c", PARENT], env=os.environ, cwd=tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 30
    while not (found := re.findall(r"^started: (\d+)$", proc.log_file.read_text(), re.M)):
        assert time.monotonic() < deadline, proc.log_file.read_text()
        time.sleep(0.05)
    child = int(found[0])
    assert proc.pid() == pid
    assert not _sig_ignored(pid, signal.SIGINT)

    assert proc.stop(timeout=10) is True
    assert not _alive(pid)
    assert not _alive(child)
    assert not proc.pid_file.exists()
    assert proc.stop() is False  # nothing left to stop


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    proc = ManagedProcess("thing", tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    # Our own PID, with a start marker that does not match: it must never be signalled.
    proc.pid_file.write_text(json.dumps({"pid": os.getpid(), "marker": "not-this-one"}))
    assert proc.pid() is None
    assert proc.stop() is False
    assert not proc.pid_file.exists()
