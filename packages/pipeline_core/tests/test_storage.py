"""Both Storage implementations: the local one, and a Prefect S3Bucket block on a real
S3-compatible server (moto's server on loopback, its requests counted by moto's recorder)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline_core.ingestion import ingest_sources
from pipeline_core.integrations.prefect import BlockStorage
from pipeline_core.manifest import EntryStatus
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source
from pipeline_core.storage import (
    LocalStorage,
    Storage,
    UnsafePathError,
    safe_relpath,
)

from .conftest import free_port


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    # moto's request recorder (off until /moto-api/recorder/start-recording) writes here
    recording = tmp_path_factory.mktemp("moto") / "recording.jsonl"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_RECORDER_FILEPATH": str(recording)},
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


async def test_find_stored_names_the_first_file_of_a_folder(any_storage):
    assert await any_storage.find_stored("raw/s/ab") is None
    await any_storage.write_bytes("raw/s/abc/x.csv", b"other")  # a sibling, not a match
    assert await any_storage.find_stored("raw/s/ab") is None
    await any_storage.write_bytes("raw/s/ab/b.csv", b"same")
    await any_storage.write_bytes("raw/s/ab/a.csv", b"same")
    assert await any_storage.find_stored("raw/s/ab") == "raw/s/ab/a.csv"


async def test_other_blocks_fall_back_to_reads_and_no_listing(tmp_path):
    from prefect.filesystems import LocalFileSystem

    storage = BlockStorage(LocalFileSystem(basepath=str(tmp_path)), "test")
    await storage.write_bytes("raw/s/ab/a.csv", b"x")
    assert await storage.exists("raw/s/ab/a.csv")
    assert not await storage.exists("raw/s/ab/b.csv")
    assert await storage.find_stored("raw/s/ab") is None  # cannot list: caller stores a copy


S3Calls = Counter[tuple[str, str]]


@pytest.fixture
def s3_calls(s3_endpoint: str) -> Iterator[Callable[[], S3Calls]]:
    """`take()`: the S3 operations moto received since the last `take()` (or the start),
    counted by (operation, first folder under the bucket folder), e.g. ("GetObject", "raw")."""
    api = f"{s3_endpoint}/moto-api/recorder"
    httpx.post(f"{api}/reset-recording").raise_for_status()
    httpx.post(f"{api}/start-recording").raise_for_status()

    def take() -> S3Calls:
        lines = httpx.get(f"{api}/download-recording").text.splitlines()
        httpx.post(f"{api}/reset-recording").raise_for_status()
        calls: S3Calls = Counter()
        for line in lines:
            request = json.loads(line)
            url = urlsplit(request["url"])
            # path-style: /<bucket>[/<bucket_folder>/<key>]
            _, _, key = unquote(url.path).lstrip("/").partition("/")
            if not key:
                calls["ListObjectsV2" if "list-type=2" in url.query else request["method"], ""] += 1
                continue
            operation = {"HEAD": "HeadObject", "GET": "GetObject", "PUT": "PutObject"}
            calls[operation.get(request["method"], request["method"]), key.split("/")[1]] += 1
        return calls

    yield take
    httpx.post(f"{api}/stop-recording").raise_for_status()


def serve_with_etags(httpserver: HTTPServer, bodies: dict[str, bytes]) -> None:
    """Serve each body at /<name> with an ETag; a matching If-None-Match gets a 304."""
    for name, body in bodies.items():
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'

        def handler(request: Request, body: bytes = body, etag: str = etag) -> Response:
            if request.headers.get("If-None-Match") == etag:
                return Response(status=304, headers={"ETag": etag})
            return Response(body, headers={"ETag": etag}, content_type="text/csv")

        httpserver.expect_request(f"/{name}").respond_with_handler(handler)


async def test_unchanged_run_over_s3_reads_no_stored_object(
    httpserver: HTTPServer,
    s3_storage: BlockStorage,
    settings: PipelineSettings,
    s3_calls: Callable[[], S3Calls],
):
    bodies = {f"s{k}.csv": f"id,value\n{k},{k * 10}\n".encode() for k in range(3)}
    serve_with_etags(httpserver, bodies)
    sources = [Source(name=n.removesuffix(".csv"), url=httpserver.url_for(f"/{n}")) for n in bodies]

    first = await ingest_sources(sources, storage=s3_storage, settings=settings, run_id="run-1")
    first_calls = s3_calls()
    second = await ingest_sources(sources, storage=s3_storage, settings=settings, run_id="run-2")
    second_calls = s3_calls()

    assert {e.status for e in first.entries} == {EntryStatus.DOWNLOADED}
    assert {e.status for e in second.entries} == {EntryStatus.UNCHANGED}
    assert [e.path for e in second.entries] == [e.path for e in first.entries]
    statuses = [response.status_code for _, response in httpserver.log]
    assert sorted(statuses) == [200] * 3 + [304] * 3
    print(f"S3 requests, first run: {dict(first_calls)}; unchanged run: {dict(second_calls)}")
    # first run: no latest.json yet (HEAD 404), one LIST per new sha256 folder, 3 uploads
    assert first_calls == {
        ("HeadObject", "manifests"): 1,
        ("ListObjectsV2", ""): 3,
        ("PutObject", "raw"): 3,
        ("PutObject", "manifests"): 2,
    }
    # unchanged run: one HEAD per stored file, no object of raw/ read; the only GET is
    # the previous manifest (after the HEAD that finds it), then the 2 manifest writes
    assert second_calls == {
        ("HeadObject", "manifests"): 1,
        ("GetObject", "manifests"): 1,
        ("HeadObject", "raw"): 3,
        ("PutObject", "manifests"): 2,
    }


def stored_files(storage: Storage, folder: str) -> list[str]:
    """Every file under `folder`, listed without the Storage methods under test."""
    if isinstance(storage, LocalStorage):
        return sorted(
            p.relative_to(storage.root).as_posix()
            for p in (storage.root / folder).rglob("*")
            if p.is_file()
        )
    assert isinstance(storage, BlockStorage)
    block = storage.block
    prefix = f"{block.bucket_folder}/"
    listed = block.credentials.get_s3_client().list_objects_v2(
        Bucket=block.bucket_name, Prefix=f"{prefix}{folder}/"
    )
    return sorted(item["Key"].removeprefix(prefix) for item in listed.get("Contents", []))


async def test_same_bytes_under_a_new_name_are_stored_once(
    any_storage: Storage, httpserver: HTTPServer, settings: PipelineSettings
):
    a, b = b"id,value\n1,10\n", b"id,value\n2,20\n"
    served = [("a.csv", a), ("b.csv", b), ("a3.csv", a)]
    for name, body in served:
        httpserver.expect_request(f"/{name}").respond_with_data(body, content_type="text/csv")
    entries = []
    for run, (name, _) in enumerate(served):
        source = Source(name="src", url=httpserver.url_for(f"/{name}"))
        manifest = await ingest_sources(
            [source], storage=any_storage, settings=settings, run_id=f"run-{run}"
        )
        entries.append(manifest.entries[0])
    first_a, second_b, again_a = entries

    assert [e.status for e in entries] == [EntryStatus.DOWNLOADED] * 3
    sha_a = hashlib.sha256(a).hexdigest()
    assert again_a.sha256 == first_a.sha256 == sha_a
    assert again_a.path == first_a.path == f"raw/src/{sha_a}/a.csv"  # the copy actually stored
    assert stored_files(any_storage, "raw/src") == sorted([first_a.path, second_b.path])
    assert await any_storage.read_bytes(again_a.path) == a


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_stored_files_get_the_umask_mode_not_mkstemps_0600(
    tmp_path: Path, umask: int, mode: int
) -> None:
    """The compose worker (umask 002) leaves files its host user can read through the group."""
    code = (
        "import asyncio, os, sys\n"
        f"os.umask({umask})\n"
        "from pathlib import Path\n"
        "from pipeline_core.storage import LocalStorage\n"
        "async def main():\n"
        "    store = LocalStorage(Path(sys.argv[1]))\n"
        "    async with store.stage('raw') as staged:\n"
        "        staged.file.write(b'x')\n"
        "        await staged.commit('raw/x.txt')\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert stat.S_IMODE((tmp_path / "raw" / "x.txt").stat().st_mode) == mode
