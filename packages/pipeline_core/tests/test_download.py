"""download_source and ingest_sources against real HTTP servers on loopback.

Every hostile case first stores a good copy, then checks that the failure is recorded
with a clear error and that the earlier file and manifest are untouched.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline_core.ingestion import ingest_sources
from pipeline_core.manifest import EntryStatus, Manifest
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source
from pipeline_core.storage import LocalStorage

from .conftest import free_port

GOOD = b"id,value\n1,10\n2,20\n"


def src(url: str, name: str = "alpha") -> Source:
    return Source(name=name, url=url)


async def run(
    storage: LocalStorage, settings: PipelineSettings, url: str, run_id: str, name: str = "alpha"
) -> Manifest:
    return await ingest_sources([src(url, name)], storage=storage, settings=settings, run_id=run_id)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every stored file except latest.json, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "latest.json"
    }


@pytest.fixture
async def seeded(
    httpserver: HTTPServer, storage: LocalStorage, settings: PipelineSettings, data_root: Path
):
    """A first good run of source 'alpha' (served at /good.csv); returns (manifest, snapshot)."""
    httpserver.expect_request("/good.csv").respond_with_data(GOOD, content_type="text/csv")
    first = await run(storage, settings, httpserver.url_for("/good.csv"), "run-1")
    assert first.entries[0].status is EntryStatus.DOWNLOADED
    httpserver.clear()
    return first, snapshot(data_root)


async def assert_failed_and_intact(
    storage: LocalStorage,
    settings: PipelineSettings,
    data_root: Path,
    seeded,
    url: str,
    *needles: str,
) -> str:
    first, before = seeded
    second = await run(storage, settings, url, "run-2")
    entry = second.entries[0]
    assert entry.status is EntryStatus.FAILED
    for needle in needles:
        assert needle in (entry.error or ""), entry.error
    # the failed entry still points at the last good copy...
    assert entry.path == first.entries[0].path
    assert entry.sha256 == first.entries[0].sha256
    # ...and nothing stored earlier changed (the new run only adds its own manifest)
    after = snapshot(data_root)
    assert {k: v for k, v in after.items() if k != "manifests/run-2.json"} == before
    assert (data_root / first.entries[0].path).read_bytes() == GOOD
    assert not list(data_root.rglob("*.part"))
    return entry.error or ""


async def test_first_download_is_content_addressed(httpserver, storage, settings, data_root):
    httpserver.expect_request("/good.csv").respond_with_data(GOOD, headers={"ETag": '"v1"'})
    manifest = await run(storage, settings, httpserver.url_for("/good.csv"), "run-1")
    entry = manifest.entries[0]
    import hashlib

    sha = hashlib.sha256(GOOD).hexdigest()
    assert entry.status is EntryStatus.DOWNLOADED
    assert entry.path == f"raw/alpha/{sha}/good.csv"
    assert entry.sha256 == sha and entry.bytes == len(GOOD) and entry.etag == '"v1"'
    assert entry.fetched_at.tzinfo is not None
    assert (data_root / entry.path).read_bytes() == GOOD
    on_disk = Manifest.model_validate_json((data_root / "manifests/run-1.json").read_text())
    assert on_disk == Manifest.model_validate_json(
        (data_root / "manifests/latest.json").read_text()
    )
    assert on_disk.entries[0].path == entry.path


async def test_http_404_is_recorded_and_nothing_lost(
    httpserver, storage, settings, data_root, seeded
):
    httpserver.expect_request("/good.csv").respond_with_data("nope", status=404)
    error = await assert_failed_and_intact(
        storage, settings, data_root, seeded, httpserver.url_for("/good.csv"), "HTTP 404"
    )
    assert httpserver.url_for("/good.csv") in error
    assert len(httpserver.log) == 1  # a 404 is not retried


async def test_500_then_200_is_retried(httpserver, storage, settings):
    httpserver.expect_ordered_request("/flaky").respond_with_data("boom", status=500)
    httpserver.expect_ordered_request("/flaky").respond_with_data(GOOD)
    manifest = await run(storage, settings, httpserver.url_for("/flaky"), "run-1")
    assert manifest.entries[0].status is EntryStatus.DOWNLOADED
    assert manifest.entries[0].error is None
    assert [r.path for r, _ in httpserver.log] == ["/flaky", "/flaky"]


async def test_429_honours_retry_after(httpserver, storage, settings):
    stamps: list[float] = []

    def limited(request: Request) -> Response:
        stamps.append(time.monotonic())
        if len(stamps) == 1:
            return Response("slow down", status=429, headers={"Retry-After": "1"})
        return Response(GOOD)

    httpserver.expect_request("/limited").respond_with_handler(limited)
    manifest = await run(storage, settings, httpserver.url_for("/limited"), "run-1")
    assert manifest.entries[0].status is EntryStatus.DOWNLOADED
    assert len(stamps) == 2
    # Retry-After (1 s) wins over the 0.05 s backoff.
    assert stamps[1] - stamps[0] >= 0.9


async def test_429_forever_fails_after_retries(httpserver, storage, settings, data_root, seeded):
    httpserver.expect_request("/good.csv").respond_with_data(
        "busy", status=429, headers={"Retry-After": "0"}
    )
    await assert_failed_and_intact(
        storage,
        settings,
        data_root,
        seeded,
        httpserver.url_for("/good.csv"),
        "HTTP 429",
        "after 3 attempts",
    )
    assert len(httpserver.log) == settings.max_retries + 1


async def test_read_timeout(httpserver, storage, settings, data_root, seeded, raw_server):
    # Headers arrive, then the body never does.
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", 30)
    settings.max_retries = 0
    await assert_failed_and_intact(
        storage, settings, data_root, seeded, url + "/good.csv", "ReadTimeout"
    )


async def test_total_timeout(storage, settings, data_root, seeded, raw_server):
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", 30)
    settings.total_timeout = 1.5
    settings.max_retries = 10
    await assert_failed_and_intact(
        storage, settings, data_root, seeded, url + "/good.csv", "timed out after 1.5s in total"
    )


async def test_connection_refused(storage, settings, data_root, seeded):
    url = f"http://127.0.0.1:{free_port()}/good.csv"
    error = await assert_failed_and_intact(
        storage, settings, data_root, seeded, url, "ConnectError", url
    )
    assert "after 3 attempts" in error


async def test_body_shorter_than_content_length(storage, settings, data_root, seeded, raw_server):
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nid,value\n1,10\n", 0)
    error = await assert_failed_and_intact(storage, settings, data_root, seeded, url + "/good.csv")
    assert "RemoteProtocolError" in error or "truncated" in error, error


async def test_redirect_loop(httpserver, storage, settings, data_root, seeded):
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=302, headers={"Location": "/a"})
    await assert_failed_and_intact(
        storage, settings, data_root, seeded, httpserver.url_for("/a"), "too many redirects"
    )
    assert len(httpserver.log) == settings.max_redirects + 1


async def test_redirect_within_limit_is_followed(httpserver, storage, settings):
    httpserver.expect_request("/old").respond_with_data(
        "", status=301, headers={"Location": "/new.csv"}
    )
    httpserver.expect_request("/new.csv").respond_with_data(GOOD)
    entry = (await run(storage, settings, httpserver.url_for("/old"), "run-1")).entries[0]
    assert entry.status is EntryStatus.DOWNLOADED and entry.bytes == len(GOOD)


async def test_declared_size_over_limit(httpserver, storage, settings, data_root, seeded):
    settings.max_bytes = 1000
    httpserver.expect_request("/good.csv").respond_with_data(b"x" * 5000)
    await assert_failed_and_intact(
        storage,
        settings,
        data_root,
        seeded,
        httpserver.url_for("/good.csv"),
        "over the limit of 1000",
    )


async def test_streamed_size_over_limit(httpserver, storage, settings, data_root, seeded):
    settings.max_bytes = 1000

    def chunked(request: Request) -> Response:
        return Response(b"x" * 500 for _ in range(10))  # no Content-Length: chunked

    httpserver.expect_request("/good.csv").respond_with_handler(chunked)
    await assert_failed_and_intact(
        storage,
        settings,
        data_root,
        seeded,
        httpserver.url_for("/good.csv"),
        "more than 1000 bytes",
    )


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ("attachment; filename*=UTF-8''..%2F..%2Fr%C3%A9sum%C3%A9.csv", "resume.csv"),
        ("attachment; filename*=UTF-8''%FF%FE%00bad.csv", "bad.csv"),
        ('attachment; filename="/"', "data"),
    ],
)
async def test_content_disposition_cannot_escape(
    httpserver, storage, settings, data_root, disposition, expected
):
    httpserver.expect_request("/x").respond_with_data(
        GOOD, headers={"Content-Disposition": disposition}
    )
    entry = (await run(storage, settings, httpserver.url_for("/x"), "run-1")).entries[0]
    assert entry.status is EntryStatus.DOWNLOADED
    assert entry.path is not None and entry.path.endswith("/" + expected)
    stored = (data_root / entry.path).resolve()
    assert stored.is_relative_to(data_root.resolve())
    assert stored.read_bytes() == GOOD
    files = [p for p in data_root.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(data_root.resolve()) for p in files)


async def test_non_utf8_and_very_long_filename(httpserver, storage, settings, data_root):
    long_name = "a" * 300 + ".csv"
    httpserver.expect_request("/" + long_name).respond_with_data(GOOD)
    raw_header = 'attachment; filename="caf\xe9-\xff\xfe.csv"'  # latin-1 bytes, not UTF-8
    httpserver.expect_request("/latin").respond_with_data(
        GOOD, headers={"Content-Disposition": raw_header}
    )
    manifest = await ingest_sources(
        [
            src(httpserver.url_for("/" + long_name), "long"),
            src(httpserver.url_for("/latin"), "latin"),
        ],
        storage=storage,
        settings=settings,
        run_id="run-1",
    )
    long_entry, latin_entry = manifest.entries
    long_file = Path(long_entry.path or "").name
    assert len(long_file) <= 100 and long_file.endswith(".csv")
    latin_file = Path(latin_entry.path or "").name
    assert latin_file.isascii() and latin_file.endswith(".csv") and latin_file.startswith("caf")
    for entry in manifest.entries:
        assert (data_root / (entry.path or "")).read_bytes() == GOOD


async def test_unchanged_rerun_uses_conditional_request(httpserver, storage, settings, data_root):
    etag, modified = '"abc"', "Wed, 01 Jan 2026 00:00:00 GMT"
    httpserver.expect_ordered_request("/d.csv").respond_with_data(
        GOOD, headers={"ETag": etag, "Last-Modified": modified}
    )
    httpserver.expect_ordered_request(
        "/d.csv", headers={"If-None-Match": etag, "If-Modified-Since": modified}
    ).respond_with_data("", status=304)
    first = (await run(storage, settings, httpserver.url_for("/d.csv"), "run-1")).entries[0]
    stored = data_root / (first.path or "")
    mtime = stored.stat().st_mtime_ns
    before = snapshot(data_root)
    second = (await run(storage, settings, httpserver.url_for("/d.csv"), "run-2")).entries[0]
    assert second.status is EntryStatus.UNCHANGED
    assert (second.path, second.sha256, second.etag) == (first.path, first.sha256, etag)
    assert stored.stat().st_mtime_ns == mtime  # nothing rewritten
    after = snapshot(data_root)
    assert {k: v for k, v in after.items() if k != "manifests/run-2.json"} == before
    httpserver.check_assertions()


async def test_same_bytes_without_validators_is_unchanged(httpserver, storage, settings, data_root):
    httpserver.expect_request("/d.csv").respond_with_data(GOOD)
    first = (await run(storage, settings, httpserver.url_for("/d.csv"), "run-1")).entries[0]
    mtime = (data_root / (first.path or "")).stat().st_mtime_ns
    second = (await run(storage, settings, httpserver.url_for("/d.csv"), "run-2")).entries[0]
    assert second.status is EntryStatus.UNCHANGED and second.path == first.path
    assert (data_root / (first.path or "")).stat().st_mtime_ns == mtime


async def test_changed_content_stores_new_version_and_keeps_old(
    httpserver, storage, settings, data_root
):
    httpserver.expect_ordered_request("/d.csv").respond_with_data(GOOD, headers={"ETag": '"v1"'})
    httpserver.expect_ordered_request("/d.csv").respond_with_data(
        GOOD + b"3,30\n", headers={"ETag": '"v2"'}
    )
    first = (await run(storage, settings, httpserver.url_for("/d.csv"), "run-1")).entries[0]
    second = (await run(storage, settings, httpserver.url_for("/d.csv"), "run-2")).entries[0]
    assert second.status is EntryStatus.DOWNLOADED and second.etag == '"v2"'
    assert second.sha256 != first.sha256 and second.path != first.path
    assert (data_root / (first.path or "")).read_bytes() == GOOD
    assert (data_root / (second.path or "")).read_bytes() == GOOD + b"3,30\n"
    old = Manifest.model_validate_json((data_root / "manifests/run-1.json").read_text())
    assert old.entries[0].path == first.path


async def test_one_bad_source_does_not_stop_the_others(httpserver, storage, settings):
    httpserver.expect_request("/ok.csv").respond_with_data(GOOD)
    httpserver.expect_request("/missing.csv").respond_with_data("", status=404)
    manifest = await ingest_sources(
        [
            src(httpserver.url_for("/ok.csv"), "ok"),
            src(httpserver.url_for("/missing.csv"), "missing"),
        ],
        storage=storage,
        settings=settings,
        run_id="run-1",
    )
    assert [(e.source, e.status) for e in manifest.entries] == [
        ("ok", EntryStatus.DOWNLOADED),
        ("missing", EntryStatus.FAILED),
    ]
    assert [e.source for e in manifest.failed] == ["missing"]
