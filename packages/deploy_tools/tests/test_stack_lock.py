"""One stack lock per checkout: a second caller waits naming the holder, or refuses with --no-wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy_tools.cli import app
from deploy_tools.local.stack.lock import LockHolder, StackBusyError, StackLock, current_holder
from deploy_tools.local.stack.processes import ManagedProcess

# Takes the lock as "deploy local", says so, then holds it for argv[2] seconds.
HOLDER = """
import sys, time
from pathlib import Path
from deploy_tools.local.stack.lock import StackLock
with StackLock(Path(sys.argv[1]), "deploy local"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(state: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = _hold(tmp_path / ".local", 600)
    yield proc
    proc.kill()
    proc.wait()


def test_no_wait_refuses_naming_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(StackBusyError) as caught:
        StackLock(tmp_path / ".local", "stack up", wait=False).acquire()
    assert caught.value.holder == LockHolder(holder.pid, "deploy local")
    assert f"deploy local (pid {holder.pid})" in str(caught.value)
    assert current_holder(tmp_path / ".local") == LockHolder(holder.pid, "deploy local")


def test_a_waiting_caller_names_the_holder_then_gets_the_lock(tmp_path: Path) -> None:
    state = tmp_path / ".local"
    proc = _hold(state, 1.5)
    seen: list[LockHolder] = []
    started = time.monotonic()
    with StackLock(state, "stack down", on_wait=seen.append):
        waited = time.monotonic() - started
        assert current_holder(state) == LockHolder(os.getpid(), "stack down")
    proc.wait(10)
    assert seen == [LockHolder(proc.pid, "deploy local")]  # said once, not every poll
    assert waited > 0.5
    assert current_holder(state) is None


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path) -> None:
    state = tmp_path / ".local"
    proc = _hold(state, 600)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with StackLock(state, "stack up", wait=False):
        pass


def test_processes_started_under_the_lock_do_not_keep_it(tmp_path: Path) -> None:
    state = tmp_path / ".local"
    part = ManagedProcess("server", state)
    with StackLock(state, "stack up"):
        part.start(
            [sys.executable, "-c", "import time; time.sleep(600)"], env=os.environ, cwd=tmp_path
        )
    try:
        assert part.pid() is not None
        assert current_holder(state) is None
        with StackLock(state, "stack down", wait=False):
            pass
    finally:
        part.stop()


@pytest.fixture
def checkout(make_checkout: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture checkout as the current folder, in the folder `holder` locks (`tmp_path`)."""
    root = make_checkout(".")
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize(
    "command", [["stack", "up"], ["stack", "down"], ["deploy", "local", "--mode", "process"]]
)
def test_commands_that_start_or_stop_parts_refuse_with_no_wait(
    checkout: Path, holder: subprocess.Popen[str], command: list[str]
) -> None:
    result = CliRunner().invoke(app, [*command, "--no-wait"])
    assert result.exit_code == 1, result.output
    assert f"deploy local (pid {holder.pid}) is starting or stopping the stack" in result.output
    assert "without --no-wait" in result.output
    assert not (checkout / ".local" / "run").exists()  # nothing was started or stopped


def test_the_service_waits_saying_for_whom(checkout: Path) -> None:
    from deploy_tools.local.service import stack_lock
    from deploy_tools.settings import load_settings

    settings = load_settings(checkout)
    proc = _hold(settings.local_dir, 1.0)
    said: list[str] = []

    class Said:
        def info(self, message: str) -> None:
            said.append(message)

    with stack_lock(settings, "stack up", Said()):  # type: ignore[arg-type]
        assert current_holder(settings.local_dir) == LockHolder(os.getpid(), "stack up")
    proc.wait(10)
    assert said == [f"waiting for deploy local (pid {proc.pid}) to finish…"]


def test_status_says_who_is_changing_parts(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, holder: subprocess.Popen[str]
) -> None:
    monkeypatch.setenv("AIRNUB_SERVER_PORT", "9")  # nothing answers there
    monkeypatch.setenv("AIRNUB_DATA_PORT", "9")
    result = CliRunner().invoke(app, ["stack", "status"])
    assert result.exit_code == 1
    assert f"deploy local (pid {holder.pid}) is starting or stopping parts" in result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: the Prefect server is not running; start the stack with `airnub stack up`"
    )
