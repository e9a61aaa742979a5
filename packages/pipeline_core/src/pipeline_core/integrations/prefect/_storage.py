"""`BlockStorage`: pipeline files in a Prefect writable filesystem block (e.g. `S3Bucket`)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pipeline_core.storage import LocalStorage, StagedFile, Storage, safe_relpath


class BlockStorage:
    """Files in a Prefect writable filesystem block (e.g. `S3Bucket`), loaded by name.

    Streams are staged in a local temp file and uploaded whole on commit; object stores
    make a finished PUT visible atomically. A prefect-aws `S3Bucket` is used through its
    own S3 client, at the key `<bucket_folder>/<path>`: `exists` is one HEAD and
    `find_stored` one LIST, so an unchanged run reads no stored object. Other blocks go
    through Prefect's filesystem interface (`aread_path`, `awrite_path`), which has no
    metadata call, so `exists` reads the file and `find_stored` answers None.
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
        # every S3 call below (HEAD, LIST, GET, PUT) uses this key, so they agree on it
        return PurePosixPath(self.block.bucket_folder, path).as_posix()

    def _s3_client(self) -> Any:
        return self.block.credentials.get_s3_client()  # cached per credentials

    def _s3_head(self, path: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3_client().head_object(Bucket=self.block.bucket_name, Key=self._s3_key(path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _s3_first(self, folder: str) -> str | None:
        prefix = self._s3_key(folder).rstrip("/") + "/"
        listed = self._s3_client().list_objects_v2(
            Bucket=self.block.bucket_name, Prefix=prefix, MaxKeys=1
        )
        keys = [item["Key"] for item in listed.get("Contents", [])]
        return f"{folder}/{keys[0][len(prefix) :]}" if keys else None

    def _s3_get(self, path: str) -> bytes:
        got = self._s3_client().get_object(Bucket=self.block.bucket_name, Key=self._s3_key(path))
        return bytes(got["Body"].read())

    def _s3_put(self, path: str, data: bytes) -> None:
        self._s3_client().put_object(
            Bucket=self.block.bucket_name, Key=self._s3_key(path), Body=data
        )

    async def read_bytes(self, path: str) -> bytes:
        try:
            if self._s3:
                return await asyncio.to_thread(self._s3_get, safe_relpath(path))
            return bytes(await self.block.aread_path(safe_relpath(path)))
        except Exception as exc:  # botocore raises ClientError(NoSuchKey)
            if "NoSuchKey" in repr(exc) or "404" in repr(exc) or isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(path) from exc
            raise

    async def write_bytes(self, path: str, data: bytes) -> None:
        if self._s3:
            await asyncio.to_thread(self._s3_put, safe_relpath(path), data)
        else:
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


async def open_storage(data_root: Path, block_name: str | None) -> Storage:
    """The configured store: the named Prefect block, else the local data root."""
    if block_name:
        return await BlockStorage.load(block_name)
    return LocalStorage(data_root)
