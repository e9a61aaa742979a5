"""One source's failure stays that source's: odd redirects, encodings, a full disk.

Real loopback servers; the disk-full cases use a real 1 MiB tmpfs as the data root
(needs root to mount, as CI has).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from pipeline_core.ingestion import ingest_sources
from pipeline_core.manifest import EntryStatus, Manifest, ManifestWriteError
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source
from pipeline_core.storage import LocalStorage

GOOD = b"id,value\n1,10\n2,20\n"


def sources(server: HTTPServer, *paths: str) -> list[Source]:
    return [Source(name=f"s{i}", url=server.url_for(p)) for i, p in enumerate(paths)]


def stray_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".part")]


@pytest.mark.parametrize(
    ("location", "needle"),
    [
        ("data:text/csv,id%0A1", "only http and https are followed"),
        ("mailto:someone@example.org", "only http and https are followed"),
        ("ftp://127.0.0.1/file.csv", "only http and https are followed"),
        ("http://127.0.0.1:99999/x.csv", "invalid URL"),
        ("http://127.0.0.1:0/x.csv", "port 0"),
        ("https:///no-host", "no host"),
        ("http://[::1/x", "invalid URL"),
    ],
)
async def test_unusual_redirect_is_that_sources_failure(
    httpserver: HTTPServer,
    raw_server,
    storage: LocalStorage,
    settings: PipelineSettings,
    data_root: Path,
    location: str,
    needle: str,
):
    odd_url = raw_server(
        f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    )
    httpserver.expect_request("/good.csv").respond_with_data(GOOD)
    wanted = [
        Source(name="odd", url=odd_url + "/odd.csv"),
        Source(name="good", url=httpserver.url_for("/good.csv")),
    ]
    manifest = await ingest_sources(wanted, storage=storage, settings=settings, run_id="r1")
    odd, good = manifest.entries
    assert odd.status is EntryStatus.FAILED and needle in (odd.error or ""), odd.error
    assert "redirect to" in (odd.error or "")
    assert good.status is EntryStatus.DOWNLOADED
    assert (data_root / "manifests/latest.json").is_file()
    assert not stray_files(data_root)


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    httpserver: HTTPServer, storage: LocalStorage, settings: PipelineSettings
):
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        other.expect_request("/file.csv").respond_with_data(GOOD)
        httpserver.expect_request("/moved").respond_with_data(
            "", status=307, headers={"Location": "/here.csv"}
        )
        httpserver.expect_request("/here.csv").respond_with_data(
            "", status=302, headers={"Location": other.url_for("/file.csv")}
        )
        from pipeline_core.download import download_source, make_client

        async with make_client(settings) as client:
            entry = await download_source(
                Source(name="s", url=httpserver.url_for("/moved")),
                client=client,
                storage=storage,
                settings=settings,
                headers={"Authorization": "Bearer s3cr3t"},
            )
        assert entry.status is EntryStatus.DOWNLOADED
        seen = {r.path: r.headers.get("Authorization") for r, _ in httpserver.log}
        assert seen == {"/moved": "Bearer s3cr3t", "/here.csv": "Bearer s3cr3t"}
        assert [r.headers.get("Authorization") for r, _ in other.log] == [None]
    finally:
        other.clear()
        if other.is_running():
            other.stop()


def _serve(body: bytes, encoding: str | None, status: int = 200) -> Response:
    headers = {"Content-Encoding": encoding} if encoding else {}
    return Response(body, status=status, headers=headers)


# mtime=0: the same bytes (and test ids) in every xdist worker.
@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip.compress(GOOD, mtime=0), "gzip"),
        (gzip.compress(GOOD[:9], mtime=0) + gzip.compress(GOOD[9:], mtime=0), "gzip"),  # 2 members
        (zlib.compress(GOOD), "deflate"),
        (zlib.compress(GOOD)[2:-4], "deflate"),  # raw deflate, as some servers send it
        (GOOD, "identity"),
    ],
)
async def test_encodings_are_decoded(httpserver, storage, settings, data_root, body, encoding):
    httpserver.expect_request("/e.csv").respond_with_handler(lambda _r: _serve(body, encoding))
    manifest = await ingest_sources(
        sources(httpserver, "/e.csv"), storage=storage, settings=settings, run_id="r1"
    )
    entry = manifest.entries[0]
    assert entry.status is EntryStatus.DOWNLOADED, entry.error
    assert entry.sha256 == hashlib.sha256(GOOD).hexdigest() and entry.bytes == len(GOOD)
    assert (data_root / (entry.path or "")).read_bytes() == GOOD


@pytest.mark.parametrize(
    ("body", "encoding", "needle"),
    [
        (
            gzip.compress(gzip.compress(GOOD, mtime=0), mtime=0),
            "gzip, gzip",
            "more than one coding is refused",
        ),
        (GOOD, "br", "unsupported Content-Encoding 'br'"),
        (b"not gzip at all", "gzip", "corrupt gzip body"),
        (gzip.compress(GOOD * 50, mtime=0)[:-30], "gzip", "truncated gzip body"),
    ],
)
async def test_bad_encodings_fail_that_source(
    httpserver, storage, settings, data_root, body, encoding, needle
):
    httpserver.expect_request("/bad.csv").respond_with_handler(lambda _r: _serve(body, encoding))
    httpserver.expect_request("/good.csv").respond_with_data(GOOD)
    manifest = await ingest_sources(
        sources(httpserver, "/bad.csv", "/good.csv"), storage=storage, settings=settings, run_id="r"
    )
    bad, good = manifest.entries
    assert bad.status is EntryStatus.FAILED and needle in (bad.error or ""), bad.error
    assert good.status is EntryStatus.DOWNLOADED
    assert not stray_files(data_root)


async def test_decoded_size_counts_against_the_limit(httpserver, storage, settings, data_root):
    settings.max_bytes = 64 * 1024
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024), compresslevel=9)  # ~8 KiB on the wire
    httpserver.expect_request("/bomb.csv").respond_with_handler(lambda _r: _serve(bomb, "gzip"))
    manifest = await ingest_sources(
        sources(httpserver, "/bomb.csv"), storage=storage, settings=settings, run_id="r"
    )
    entry = manifest.entries[0]
    assert entry.status is EntryStatus.FAILED
    assert f"sent more than {64 * 1024} bytes ({settings.env_name('max_bytes')})" in (
        entry.error or ""
    )
    assert not stray_files(data_root)
    assert not [p for p in (data_root / "raw").rglob("*") if p.is_file()]


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_root(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs as the data root."""
    root = tmp_path / "tiny"
    root.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=False)


async def test_disk_full_while_storing_is_that_sources_failure(
    httpserver: HTTPServer, settings: PipelineSettings, tiny_root: Path
):
    httpserver.expect_request("/big.csv").respond_with_data(b"x" * (2 * 1024 * 1024))
    httpserver.expect_request("/good.csv").respond_with_data(GOOD)
    settings.max_bytes = 4 * 1024 * 1024
    storage = LocalStorage(tiny_root)
    manifest = await ingest_sources(
        sources(httpserver, "/big.csv", "/good.csv"),
        storage=storage,
        settings=settings,
        run_id="r1",
    )
    big, good = manifest.entries
    assert big.status is EntryStatus.FAILED
    assert "[Errno 28] No space left on device while storing raw/s0/" in (big.error or "")
    assert good.status is EntryStatus.DOWNLOADED
    assert (tiny_root / (good.path or "")).read_bytes() == GOOD
    on_disk = Manifest.model_validate_json((tiny_root / "manifests/latest.json").read_bytes())
    assert [e.status for e in on_disk.entries] == [EntryStatus.FAILED, EntryStatus.DOWNLOADED]
    assert not stray_files(tiny_root)


async def test_manifest_that_cannot_be_written_leaves_latest_as_it_was(
    httpserver: HTTPServer, settings: PipelineSettings, tiny_root: Path
):
    httpserver.expect_request("/good.csv").respond_with_data(GOOD)
    storage = LocalStorage(tiny_root)
    await ingest_sources(
        sources(httpserver, "/good.csv"), storage=storage, settings=settings, run_id="r1"
    )
    before = (tiny_root / "manifests/latest.json").read_bytes()
    with (tiny_root / "filler").open("wb", buffering=0) as filler:  # fill every free byte
        for size in (4096, 1):
            try:
                while filler.write(b"\0" * size):
                    pass
            except OSError:
                pass
    httpserver.clear()
    httpserver.expect_request("/good.csv").respond_with_data(GOOD + b"3,30\n")
    with pytest.raises(ManifestWriteError) as raised:
        await ingest_sources(
            sources(httpserver, "/good.csv"), storage=storage, settings=settings, run_id="r2"
        )
    message = str(raised.value)
    assert "could not write manifests/r2.json" in message and "[Errno 28]" in message
    assert "manifests/latest.json was left as it was" in message
    assert (tiny_root / "manifests/latest.json").read_bytes() == before
    assert not (tiny_root / "manifests/r2.json").exists()
    assert not stray_files(tiny_root)


async def test_empty_source_list_is_refused_and_latest_untouched(
    httpserver: HTTPServer, storage: LocalStorage, settings: PipelineSettings, data_root: Path
):
    httpserver.expect_request("/good.csv").respond_with_data(GOOD)
    await ingest_sources(
        sources(httpserver, "/good.csv"), storage=storage, settings=settings, run_id="r1"
    )
    before = (data_root / "manifests/latest.json").read_bytes()
    with pytest.raises(ValueError, match="the source list is empty"):
        await ingest_sources([], storage=storage, settings=settings, run_id="r2")
    assert (data_root / "manifests/latest.json").read_bytes() == before
    assert not (data_root / "manifests/r2.json").exists()
