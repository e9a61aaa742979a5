"""Both Storage implementations: the local one, and a Prefect S3Bucket block on a real
S3-compatible server (moto's server on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline_core.storage import BlockStorage, LocalStorage, UnsafePathError, safe_relpath

from .conftest import free_port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_storage(s3_endpoint: str) -> BlockStorage:
    import boto3
    from prefect_aws import AwsCredentials, S3Bucket

    creds = AwsCredentials(
        aws_access_key_id="test",
        aws_secret_access_key="test",  # moto accepts any credentials
        region_name="us-east-1",
        aws_client_parameters={"endpoint_url": s3_endpoint},
    )
    bucket = f"alpha-{os.urandom(4).hex()}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    return BlockStorage(
        S3Bucket(bucket_name=bucket, credentials=creds, bucket_folder="alpha"), "test"
    )


@pytest.fixture(params=["local", "s3"])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    return request.getfixturevalue("s3_storage")


async def test_write_read_exists(any_storage):
    assert not await any_storage.exists("manifests/latest.json")
    await any_storage.write_bytes("manifests/latest.json", b"{}")
    assert await any_storage.exists("manifests/latest.json")
    assert await any_storage.read_bytes("manifests/latest.json") == b"{}"
    with pytest.raises(FileNotFoundError):
        await any_storage.read_bytes("manifests/missing.json")


async def test_staged_file_is_published_only_on_commit(any_storage):
    async with any_storage.stage("raw/a") as staged:
        staged.file.write(b"v1")
        await staged.commit("raw/a/1/f.csv")
    with pytest.raises(RuntimeError):
        async with any_storage.stage("raw/a") as staged:
            staged.file.write(b"half")
            raise RuntimeError("download broke")
    assert await any_storage.read_bytes("raw/a/1/f.csv") == b"v1"
    assert not await any_storage.exists("raw/a/2/f.csv")


async def test_open_read_streams_the_stored_bytes(any_storage):
    body = bytes(range(256)) * 1000
    await any_storage.write_bytes("raw/a/1/f.bin", body)
    async with any_storage.open_read("raw/a/1/f.bin") as fh:
        pieces = list(iter(lambda: fh.read(4096), b""))
    assert len(pieces) == 63
    assert b"".join(pieces) == body
    with pytest.raises(FileNotFoundError):
        async with any_storage.open_read("raw/a/1/missing.bin"):
            pass


async def test_local_leaves_no_temp_files(tmp_path):
    storage = LocalStorage(tmp_path)
    with pytest.raises(RuntimeError):
        async with storage.stage("raw/a") as staged:
            staged.file.write(b"half")
            raise RuntimeError("x")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "a//b/.."])
def test_unsafe_paths_are_refused(bad, tmp_path):
    with pytest.raises(UnsafePathError):
        safe_relpath(bad)


async def test_symlink_out_of_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "raw").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        await LocalStorage(root).write_bytes("raw/x", b"no")
