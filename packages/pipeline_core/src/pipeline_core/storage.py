"""Where pipeline files live: one small interface, a local and a Prefect-block implementation.

Paths are always relative, `/`-separated and checked so they cannot leave the root.
Nothing outside this module knows which implementation is in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol


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
        """Whether `path` holds a file."""
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

    @contextlib.asynccontextmanager
    async def stage(self, near: str) -> AsyncIterator[StagedFile]:
        folder = self.root if near in ("", ".") else self._full(near)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
        staged = _LocalStaged(os.fdopen(fd, "wb"), Path(tmp), self)
        try:
            yield staged
        finally:
            staged.file.close()
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
    make a finished PUT visible atomically.
    """

    def __init__(self, block: Any, name: str) -> None:
        self.block = block
        self.root_description = f"block {name!r}"

    @classmethod
    async def load(cls, name: str) -> BlockStorage:
        """Load the block document `name` (`<type-slug>/<name>`, e.g. `s3-bucket/alpha-data`)."""
        from prefect.blocks.core import Block

        block = await Block.aload(name)
        if not hasattr(block, "awrite_path"):
            raise TypeError(f"block {name!r} is not a writable filesystem block")
        return cls(block, name)

    async def exists(self, path: str) -> bool:
        try:
            await self.read_bytes(path)
        except (FileNotFoundError, ValueError):
            return False
        return True

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


async def open_storage(data_root: Path, block_name: str | None) -> Storage:
    """The configured store: the named Prefect block, else the local data root."""
    if block_name:
        return await BlockStorage.load(block_name)
    return LocalStorage(data_root)
