"""Where pipeline files live: one small interface (`Storage`) and its local implementation.

Paths are always relative, `/`-separated and checked so they cannot leave the root.
The Prefect-block implementation, and `open_storage` that picks one, are in
`pipeline_core.integrations.prefect`; code that is handed a `Storage` never knows which.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

# `LocalStorage.stage` temp files: `tempfile.mkstemp(prefix=".", suffix=".part")` names them
# "." + 8 characters of [a-z0-9_] + ".part". Only names of exactly that shape are swept.
_PART_NAME = re.compile(r"\.[a-z0-9_]{8}\.part")
STALE_PART_SECONDS = 3600.0


class UnsafePathError(ValueError):
    """A relative path that would escape the storage root."""


def safe_relpath(path: str) -> str:
    """Normalise `path` and refuse anything absolute or with `..`.

    Example:
        >>> safe_relpath("raw/a/./b.csv")
        'raw/a/b.csv'
    """
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or not pure.parts or any(p in ("..", "") for p in pure.parts):
        raise UnsafePathError(f"unsafe storage path {path!r}")
    return str(pure)


def describe_os_error(exc: BaseException) -> str:
    """`[Errno 28] No space left on device`: an OSError without the temp path it names."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


class StagedFile(Protocol):
    """A temp file being written; `commit` publishes it."""

    file: BinaryIO

    async def commit(self, path: str) -> None:
        """Publish the written content at `path` atomically."""
        ...


class Storage(Protocol):
    """What pipelines need from a store."""

    root_description: str

    async def exists(self, path: str) -> bool:
        """Whether `path` holds a file (local and S3: a metadata check, content not read)."""
        ...

    async def find_stored(self, folder: str) -> str | None:
        """The path of the first file in `folder` (by name), or None if it holds none.

        Content-addressed folders (`raw/<source>/<sha256>/`) hold the same bytes under
        any name, so one hit is enough to reuse a stored copy. A store that cannot list
        answers None (the caller then stores its own copy).
        """
        ...

    async def read_bytes(self, path: str) -> bytes:
        """The content of `path` (FileNotFoundError if missing)."""
        ...

    async def write_bytes(self, path: str, data: bytes) -> None:
        """Replace `path` with `data`, atomically: readers see the old or the new file."""
        ...

    def open_read(self, path: str) -> contextlib.AbstractAsyncContextManager[BinaryIO]:
        """`path` as a binary file to read in pieces (FileNotFoundError if missing)."""
        ...

    def stage(self, near: str) -> contextlib.AbstractAsyncContextManager[StagedFile]:
        """A temp file to stream into, placed near the directory `near`.

        Call `await staged.commit(path)` to publish it atomically at `path`; an uncommitted
        temp file is discarded when the block exits, so a failure never touches `path`.
        """
        ...


class LocalStorage:
    """Files under a local directory; writes go to a temp file beside the target, then rename."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root_description = str(self.root)

    def _full(self, path: str) -> Path:
        full = (self.root / safe_relpath(path)).resolve()
        if not full.is_relative_to(self.root):  # a symlink pointing out
            raise UnsafePathError(f"storage path {path!r} resolves outside {self.root}")
        return full

    async def exists(self, path: str) -> bool:
        return self._full(path).is_file()

    async def find_stored(self, folder: str) -> str | None:
        try:
            with os.scandir(self._full(folder)) as found:
                # a dot file would be a temp file (none is staged here): never reuse one
                names = [
                    e.name
                    for e in found
                    if e.is_file(follow_symlinks=False) and not e.name.startswith(".")
                ]
        except (FileNotFoundError, NotADirectoryError):
            return None
        return f"{safe_relpath(folder)}/{min(names)}" if names else None

    async def read_bytes(self, path: str) -> bytes:
        return self._full(path).read_bytes()

    @contextlib.asynccontextmanager
    async def open_read(self, path: str) -> AsyncIterator[BinaryIO]:
        with self._full(path).open("rb") as fh:
            yield fh

    async def write_bytes(self, path: str, data: bytes) -> None:
        async with self.stage(str(PurePosixPath(safe_relpath(path)).parent)) as staged:
            staged.file.write(data)
            await staged.commit(path)

    def sweep_stale(self, max_age: float = STALE_PART_SECONDS) -> list[Path]:
        """Remove temp files `stage` left behind (a killed run) older than `max_age` seconds.

        Only regular files named like `stage`'s temp files are touched, anywhere under the
        root; a temp file being written is younger than `max_age` (its mtime moves with each
        write) and stays. Returns the removed paths.
        """
        cutoff = time.time() - max_age
        removed: list[Path] = []
        for folder, _dirs, files in os.walk(self.root):  # symlinked folders are not followed
            for name in files:
                if not _PART_NAME.fullmatch(name):
                    continue
                path = Path(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    st = path.lstat()
                    if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                        path.unlink()
                        removed.append(path)
        return removed

    @contextlib.asynccontextmanager
    async def stage(self, near: str) -> AsyncIterator[StagedFile]:
        folder = self.root if near in ("", ".") else self._full(near)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
        os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would outlive the rename
        staged = _LocalStaged(os.fdopen(fd, "wb"), Path(tmp), self)
        try:
            yield staged
        finally:
            try:
                staged.file.close()  # may raise (ENOSPC flushing the buffer): unlink anyway
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)


def _file_mode() -> int:
    """0666 minus this process's umask: what `open()` would give a new file.

    Stored files are renamed from `mkstemp` temp files, which are always 0600; with this they
    get the mode anything else the process writes gets (the compose worker's umask 002 makes
    them readable, through the group, by the user who started the stack).
    """
    try:  # Linux: read it without changing it (os.umask is process-wide, not thread-safe)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


class _LocalStaged:
    def __init__(self, file: BinaryIO, tmp: Path, storage: LocalStorage) -> None:
        self.file, self._tmp, self._storage = file, tmp, storage

    async def commit(self, path: str) -> None:
        target = self._storage._full(path)
        # fsync waits for the disk: in a thread, so other downloads keep streaming meanwhile
        await asyncio.to_thread(self._publish, target)

    def _publish(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self._tmp, target)  # same filesystem: atomic


async def sweep_stale(storage: Storage, max_age: float = STALE_PART_SECONDS) -> int:
    """Remove a local store's stale temp files (see `LocalStorage.sweep_stale`); how many.

    Other stores stage in anonymous temp files that vanish with their process: nothing to do.
    """
    if not isinstance(storage, LocalStorage):
        return 0
    return len(await asyncio.to_thread(storage.sweep_stale, max_age))
