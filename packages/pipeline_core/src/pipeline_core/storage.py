"""Where pipeline files live: one small interface, a local and a Prefect-block implementation.

Paths are always relative, `/`-separated and checked so they cannot leave the root.
Nothing outside this module knows which implementation is in use.
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
from typing import Any, BinaryIO, Protocol

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
        staged = _LocalStaged(os.fdopen(fd, "wb"), Path(tmp), self)
        try:
            yield staged
        finally:
            try:
                staged.file.close()  # may raise (ENOSPC flushing the buffer): unlink anyway
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)


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


class BlockStorage:
    """Files in a Prefect writable filesystem block (e.g. `S3Bucket`), loaded by name.

    Streams are staged in a local temp file and uploaded whole on commit; object stores
    make a finished PUT visible atomically. For a prefect-aws `S3Bucket`, `exists` is one
    HEAD and `find_stored` one LIST through the block's own S3 client, so an unchanged
    run reads no stored object; other blocks have no metadata call in Prefect's
    filesystem interface, so `exists` reads the file and `find_stored` answers None.
    """

    def __init__(self, block: Any, name: str) -> None:
        self.block = block
        self.root_description = f"block {name!r}"
        self._s3 = _is_s3_bucket(block)

    @classmethod
    async def load(cls, name: str) -> BlockStorage:
        """Load the block document `name` (`<type-slug>/<name>`, e.g. `s3-bucket/alpha-data`)."""
        from prefect.blocks.core import Block

        block = await Block.aload(name)
        if not hasattr(block, "awrite_path"):
            raise TypeError(f"block {name!r} is not a writable filesystem block")
        return cls(block, name)

    async def exists(self, path: str) -> bool:
        if self._s3:
            return await asyncio.to_thread(self._s3_head, safe_relpath(path))
        try:
            await self.read_bytes(path)
        except (FileNotFoundError, ValueError):
            return False
        return True

    async def find_stored(self, folder: str) -> str | None:
        if self._s3:
            return await asyncio.to_thread(self._s3_first, safe_relpath(folder))
        return None

    def _s3_key(self, path: str) -> str:
        # the key `awrite_path` writes `path` to (bucket_folder prepended), so HEAD and
        # LIST look exactly where the block's writes went
        return str(self.block._resolve_path(path))

    def _s3_head(self, path: str) -> bool:
        from botocore.exceptions import ClientError

        client = self.block.credentials.get_s3_client()  # cached per credentials
        try:
            client.head_object(Bucket=self.block.bucket_name, Key=self._s3_key(path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _s3_first(self, folder: str) -> str | None:
        prefix = self._s3_key(folder).rstrip("/") + "/"
        client = self.block.credentials.get_s3_client()
        listed = client.list_objects_v2(Bucket=self.block.bucket_name, Prefix=prefix, MaxKeys=1)
        keys = [item["Key"] for item in listed.get("Contents", [])]
        return f"{folder}/{keys[0][len(prefix) :]}" if keys else None

    async def read_bytes(self, path: str) -> bytes:
        try:
            return bytes(await self.block.aread_path(safe_relpath(path)))
        except Exception as exc:  # botocore raises ClientError(NoSuchKey)
            if "NoSuchKey" in repr(exc) or "404" in repr(exc) or isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(path) from exc
            raise

    async def write_bytes(self, path: str, data: bytes) -> None:
        await self.block.awrite_path(safe_relpath(path), data)

    @contextlib.asynccontextmanager
    async def open_read(self, path: str) -> AsyncIterator[BinaryIO]:
        # Blocks only offer whole-object reads: a local temp copy, so readers still stream.
        data = await self.read_bytes(path)
        with tempfile.TemporaryFile() as fh:
            fh.write(data)
            del data
            fh.seek(0)
            yield fh

    @contextlib.asynccontextmanager
    async def stage(self, near: str) -> AsyncIterator[StagedFile]:
        with tempfile.TemporaryFile() as fh:
            yield _BlockStaged(fh, self)


class _BlockStaged:
    def __init__(self, file: BinaryIO, storage: BlockStorage) -> None:
        self.file, self._storage = file, storage

    async def commit(self, path: str) -> None:
        self.file.seek(0)
        await self._storage.write_bytes(path, self.file.read())


def _is_s3_bucket(block: Any) -> bool:
    """Whether `block` is a prefect-aws `S3Bucket` (the `[aws]` extra may be absent)."""
    try:
        from prefect_aws import S3Bucket
    except ImportError:
        return False
    return isinstance(block, S3Bucket)


async def sweep_stale(storage: Storage, max_age: float = STALE_PART_SECONDS) -> int:
    """Remove a local store's stale temp files (see `LocalStorage.sweep_stale`); how many.

    Other stores stage in anonymous temp files that vanish with their process: nothing to do.
    """
    if not isinstance(storage, LocalStorage):
        return 0
    return len(await asyncio.to_thread(storage.sweep_stale, max_age))


async def open_storage(data_root: Path, block_name: str | None) -> Storage:
    """The configured store: the named Prefect block, else the local data root."""
    if block_name:
        return await BlockStorage.load(block_name)
    return LocalStorage(data_root)
