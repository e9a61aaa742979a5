"""`BlockStorage`: pipeline files in a Prefect writable filesystem block (e.g. `S3Bucket`)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from pipeline_core.storage import StagedFile, safe_relpath


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
        """Load the block document `name` (`<type-slug>/<name>`, e.g. `s3-bucket/pipeline-data`)."""
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
