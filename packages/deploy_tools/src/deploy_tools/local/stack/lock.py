"""`StackLock`: one lock per checkout, held by every command that starts or stops parts.

Whatever runs the stack (local processes or compose containers), the lock belongs to the
checkout: it is `fcntl.flock` on `<project>/.local/stack.lock` (`AirnubSettings.local_dir`); the
file also holds the holder's PID and command, so a second caller can say whom it waits for. The
kernel drops the lock when its holder exits, however it exits: a crashed command never leaves the
checkout locked. The file descriptor is not inherited by the processes the holder starts (Python opens files
non-inheritable), so a server started under the lock does not keep holding it.

Example:
    >>> with StackLock(settings.local_dir, "stack up", on_wait=print):  # doctest: +SKIP
    ...     stack.up()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

LOCK_FILE = "stack.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds the lock, as its holder wrote it."""

    pid: int | None
    command: str

    def describe(self) -> str:
        """`deploy local (pid 1234)`, or as much of it as is known."""
        return f"{self.command} (pid {self.pid})" if self.pid else self.command


class StackBusyError(RuntimeError):
    """Another command holds the checkout's stack lock and the caller chose not to wait."""

    def __init__(self, holder: LockHolder) -> None:
        super().__init__(
            f"{holder.describe()} is starting or stopping the stack of this checkout; "
            "run again without --no-wait to wait for it"
        )
        self.holder = holder


class StackLock:
    """An exclusive, per-checkout lock (a context manager), released on exit or process death."""

    def __init__(
        self,
        state_dir: Path,
        command: str,
        *,
        wait: bool = True,
        on_wait: Callable[[LockHolder], None] | None = None,
        poll: float = 0.2,
    ) -> None:
        self.path = state_dir / LOCK_FILE
        self.command = command
        self.wait = wait
        self.on_wait = on_wait
        self.poll = poll
        self._fd: int | None = None

    def __enter__(self) -> StackLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock; wait (calling `on_wait` once per new holder) or raise `StackBusyError`.

        Raises:
            StackBusyError: `wait` is False and another process holds the lock.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        announced: LockHolder | None = None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = read_holder(self.path)
                    if not self.wait:
                        raise StackBusyError(holder) from None
                    if holder != announced and self.on_wait is not None:
                        self.on_wait(holder)
                    announced = holder
                    time.sleep(self.poll)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": self.command}).encode(), 0)
        except BaseException:
            os.close(fd)  # closing drops a lock taken just before the failure, too
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the holder record is cleared first, so no one reads a stale one)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor releases the flock


def read_holder(path: Path) -> LockHolder:
    """The holder recorded in the lock file (`pid` None while the holder is still writing it)."""
    # The holder writes its record right after taking the lock: a reader racing it sees an
    # empty file for a moment, so give the record a few short chances to appear.
    for _ in range(10):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            raw = json.loads(path.read_text())
            return LockHolder(int(raw["pid"]), str(raw["command"]))
        time.sleep(0.02)
    return LockHolder(None, "another airnub command")


def current_holder(state_dir: Path) -> LockHolder | None:
    """Who holds the lock right now, or None when it is free (never takes it for long)."""
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path)
    finally:
        os.close(fd)
    return None
