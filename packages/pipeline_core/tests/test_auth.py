"""Source auth: headers built from a secret read at download time, failures per source."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline_core.auth import SourceAuthError, auth_headers, read_once
from pipeline_core.ingestion import ingest_sources
from pipeline_core.manifest import EntryStatus
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source, SourcesError, parse_sources
from pipeline_core.storage import LocalStorage

TOKEN = "tok-3f9a1c-SECRET"
BODY = b"id,value\n1,10\n"


def resolver(secrets: dict[str, str]):
    async def resolve(name: str) -> str:
        if name not in secrets:
            raise LookupError(f"no secret named {name!r}")
        return secrets[name]

    return resolve


def source(auth: dict[str, str] | None, url: str = "https://example.org/a.csv") -> Source:
    return Source(name="a", url=url, auth=auth)


@pytest.mark.parametrize(
    ("auth", "value", "expected"),
    [
        ({"secret": "tok"}, TOKEN, {"Authorization": f"Bearer {TOKEN}"}),
        ({"secret": "tok", "scheme": "bearer"}, f"{TOKEN}\n", {"Authorization": f"Bearer {TOKEN}"}),
        (
            {"secret": "tok", "scheme": "basic"},
            "me:pa ss:w",
            {"Authorization": "Basic " + base64.b64encode(b"me:pa ss:w").decode()},
        ),
        ({"secret": "tok", "scheme": "header", "header": "X-API-Key"}, TOKEN, {"X-API-Key": TOKEN}),
    ],
)
async def test_auth_headers_per_scheme(auth, value, expected):
    assert await auth_headers(source(auth), resolver({"tok": value})) == expected


async def test_no_auth_needs_no_resolver():
    assert await auth_headers(source(None), None) == {}


@pytest.mark.parametrize(
    ("auth", "secrets", "needle"),
    [
        ({"secret": "tok"}, {}, "no secret named 'tok'"),
        ({"secret": "tok"}, {"tok": "   "}, "is empty or holds characters not allowed"),
        ({"secret": "tok"}, {"tok": f"{TOKEN}\r\nX-Evil: 1"}, "characters not allowed"),
        ({"secret": "tok", "scheme": "basic"}, {"tok": TOKEN}, "expects 'user:password'"),
    ],
)
async def test_unusable_secret_names_source_and_secret_never_the_value(auth, secrets, needle):
    with pytest.raises(SourceAuthError) as info:
        await auth_headers(source(auth), resolver(secrets))
    message = str(info.value)
    assert message.startswith("source 'a': secret 'tok': ")
    assert needle in message
    assert TOKEN not in message


async def test_resolver_errors_are_reduced_to_their_type():
    async def leaky(name: str) -> str:
        raise RuntimeError(f"could not parse {TOKEN}")

    with pytest.raises(SourceAuthError) as info:
        await auth_headers(source({"secret": "tok"}), leaky)
    assert str(info.value) == "source 'a': secret 'tok': could not be read (RuntimeError)"


async def test_auth_without_resolver_is_an_error():
    with pytest.raises(SourceAuthError, match="no secret resolver"):
        await auth_headers(source({"secret": "tok"}), None)


@pytest.mark.parametrize(
    ("auth", "needle"),
    [
        ({"secret": "tok", "scheme": "header"}, "needs `header`"),
        ({"secret": "tok", "header": "X-Key"}, "only used with scheme 'header'"),
        (
            {"secret": "tok", "scheme": "header", "header": "Host"},
            "is set by the HTTP client itself",
        ),
        ({"secret": "tok", "scheme": "digest"}, "[auth][scheme]"),
        ({"secret": "Not A Block"}, "[auth][secret]"),
        ({"secret": "tok", "value": TOKEN}, "[auth][value]: Extra inputs"),
    ],
)
def test_invalid_auth_is_refused_at_validation(auth, needle):
    with pytest.raises(SourcesError) as info:
        parse_sources([{"name": "a", "url": "https://h/a.csv", "auth": auth}])
    assert needle in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["https://me:tok-3f9a1c-SECRET@h/a.csv", "https://tok-3f9a1c-SECRET@h/a.csv"],
)
def test_url_with_userinfo_is_refused_naming_index_and_source(url):
    value = [{"name": "ok", "url": "https://h/b.csv"}, {"name": "private", "url": url}]
    for given in (value, json.dumps(value)):
        with pytest.raises(SourcesError) as info:
            parse_sources(given)
        message = str(info.value)
        assert "sources[1]" in message
        assert "source 'private'" in message
        assert "`auth`" in message
        assert "tok-3f9a1c" not in message


@pytest.fixture
def guarded(httpserver: HTTPServer) -> HTTPServer:
    """`/data.csv`: 200 with the right bearer token, 401 otherwise."""

    def handler(request: Request) -> Response:
        if request.headers.get("Authorization") == f"Bearer {TOKEN}":
            return Response(BODY, content_type="text/csv")
        return Response("who are you?", status=401)

    httpserver.expect_request("/data.csv").respond_with_handler(handler)
    return httpserver


async def test_authenticated_download_and_per_source_failures(
    guarded: HTTPServer, storage: LocalStorage, settings: PipelineSettings, data_root: Path
):
    url = guarded.url_for("/data.csv")
    sources = parse_sources(
        [
            {"name": "with-token", "url": url, "auth": {"secret": "tok"}},
            {"name": "no-auth", "url": url},
            {"name": "wrong-token", "url": url, "auth": {"secret": "other"}},
            {"name": "missing-block", "url": url, "auth": {"secret": "nope"}},
        ]
    )
    secrets = resolver({"tok": TOKEN, "other": "not-the-token"})
    manifest = await ingest_sources(
        sources, storage=storage, settings=settings, run_id="run-1", secrets=secrets
    )
    by_name = {e.source: e for e in manifest.entries}
    assert [e.source for e in manifest.entries] == [s.name for s in sources]
    assert by_name["with-token"].status is EntryStatus.DOWNLOADED
    assert (data_root / (by_name["with-token"].path or "")).read_bytes() == BODY
    assert "HTTP 401" in (by_name["no-auth"].error or "")
    assert "HTTP 401" in (by_name["wrong-token"].error or "")
    assert (
        by_name["missing-block"].error
        == "source 'missing-block': secret 'nope': no secret named 'nope'"
    )
    # The server saw the token only from the source that names it; the secret is read at
    # download time and never lands in storage.
    sent = [r.headers.get("Authorization") for r, _ in guarded.log]
    assert sent.count(f"Bearer {TOKEN}") == 1
    for path in data_root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


async def test_unreadable_secret_keeps_pointing_at_the_last_good_copy(
    guarded: HTTPServer, storage: LocalStorage, settings: PipelineSettings
):
    (src,) = parse_sources(
        [{"name": "a", "url": guarded.url_for("/data.csv"), "auth": {"secret": "tok"}}]
    )
    first = await ingest_sources(
        [src], storage=storage, settings=settings, run_id="run-1", secrets=resolver({"tok": TOKEN})
    )
    second = await ingest_sources(
        [src], storage=storage, settings=settings, run_id="run-2", secrets=resolver({})
    )
    entry = second.entries[0]
    assert entry.status is EntryStatus.FAILED
    assert entry.error == "source 'a': secret 'tok': no secret named 'tok'"
    assert (entry.path, entry.sha256) == (first.entries[0].path, first.entries[0].sha256)
    assert len(guarded.log) == 1  # nothing was requested without the secret


async def test_read_once_reads_each_secret_once_and_retries_failures():
    reads: list[str] = []

    async def resolve(name: str) -> str:
        reads.append(name)
        if name == "flaky" and reads.count("flaky") == 1:
            raise LookupError("not yet")
        return f"value-of-{name}"

    cached = read_once(resolve)
    assert [await cached("a"), await cached("a"), await cached("b")] == [
        "value-of-a",
        "value-of-a",
        "value-of-b",
    ]
    with pytest.raises(LookupError):
        await cached("flaky")
    assert await cached("flaky") == "value-of-flaky"
    assert reads == ["a", "b", "flaky", "flaky"]


def test_manifest_entry_url_is_stored_redacted():
    from pipeline_core.manifest import ManifestEntry

    entry = ManifestEntry(source="a", url="https://h/a.csv?token=t0k", status=EntryStatus.FAILED)
    assert entry.url == "https://h/a.csv?token=REDACTED"
