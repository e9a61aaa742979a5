"""Background processes whose PID and log live in a state folder, and are stopped by PID.

Each process leads its own session (process group), so stopping it also stops what it
started (a worker's flow-run subprocesses). SIGINT and SIGTERM are reset to their defaults in
the child: a `prefect worker start` whose parent ignored SIGINT (a script's `cmd &`) ignores
the first SIGTERM otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _reset_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start_marker(pid: int) -> str | None:
    """Something that changes when a PID is reused: the process start time (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():  # no procfs (macOS): fall back to ps
            out = subprocess.run(
                ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
            ).stdout.strip()
            return out or None
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":  # a zombie is gone for our purposes
        return None
    return fields[19]  # starttime, field 22 of /proc/<pid>/stat


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(…, 0) also succeeds on a zombie leader: look closer on Linux.
    if Path("/proc").is_dir():
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != "Z":
                    return True
        return False
    return True


@dataclass(frozen=True)
class ManagedProcess:
    """A named background process: `<state>/run/<name>.json` holds its PID, `<state>/logs/<name>.log` its output."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        """Where the PID (and what identifies the process) is recorded."""
        return self.state_dir / "run" / f"{self.name}.json"

    @property
    def log_file(self) -> Path:
        """The process's stdout and stderr."""
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The PID if that very process is still running, else None (a stale record is removed)."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid = int(record["pid"])
        if _start_marker(pid) != record.get("marker"):
            _reap(pid)
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, cmd: list[str], *, env: Mapping[str, str], cwd: Path) -> int:
        """Start `cmd` in its own session with output to the log file; record and return its PID."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(
                f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(cmd)}\n".encode()
            )
            log.flush()
            proc = subprocess.Popen(
                cmd,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_reset_signals,
            )
        record = {"pid": proc.pid, "marker": _start_marker(proc.pid), "cmd": cmd}
        self.pid_file.write_text(json.dumps(record))
        # Popen would warn when garbage-collected while the child runs; the PID file owns it now.
        proc.returncode = 0
        return proc.pid

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM the process group, SIGKILL it after `timeout` s; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not _group_alive(pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True
