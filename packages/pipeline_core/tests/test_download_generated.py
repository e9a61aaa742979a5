"""Generated behaviour: whatever a server answers, every source gets one manifest entry.

A raw asyncio HTTP server on loopback answers each path with a response drawn by
Hypothesis: status codes, headers, redirects (good, looping and unusual targets),
content encodings (also stacked or unsupported), framings, truncations, garbage and
delays. For every draw, two ingest runs (the second with conditional requests) end with
one manifest entry per source, no temp file, and exactly the stored files the manifest
names, each with the sha256 it records.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_core.ingestion import ingest_sources
from pipeline_core.manifest import EntryStatus, Manifest
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source
from pipeline_core.storage import LocalStorage


@dataclass
class Answer:
    """How the server answers one path."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    encoding: str | None = None
    framing: str = "length"  # length | chunked | close
    truncate_at: int | None = None  # stop sending the body after this many bytes
    delay: float = 0.0  # before the status line
    garbage: bytes | None = None  # instead of an HTTP response
    hang: bool = False  # never answer

    def encoded(self) -> bytes:
        if self.encoding in ("gzip", "x-gzip"):
            return gzip.compress(self.body)
        if self.encoding == "deflate":
            return zlib.compress(self.body)
        if self.encoding == "gzip, gzip":
            return gzip.compress(gzip.compress(self.body))
        return self.body


class ScenarioServer:
    """Answers `GET /<key>` with `answers[key]`; one response per connection."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        ready = threading.Event()
        self.port = 0

        async def main() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await self._stop.wait()

        self._thread = threading.Thread(
            target=lambda: self._loop.run_until_complete(main()), daemon=True
        )
        self._thread.start()
        ready.wait(5)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            key = head.split(b" ", 2)[1].decode().lstrip("/")
            answer = self.answers.get(key, Answer(status=404))
            await self._answer(answer, writer)
        writer.close()

    async def _answer(self, a: Answer, writer: asyncio.StreamWriter) -> None:
        if a.hang:
            await asyncio.sleep(3)
            return
        await asyncio.sleep(a.delay)
        if a.garbage is not None:
            writer.write(a.garbage)
            await writer.drain()
            return
        body = a.encoded()
        lines = [
            f"HTTP/1.1 {a.status} X",
            "Connection: close",
            *(f"{k}: {v}" for k, v in a.headers),
        ]
        if a.encoding:
            lines.append(f"Content-Encoding: {a.encoding}")
        if a.framing == "length":
            lines.append(f"Content-Length: {len(body)}")
        elif a.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if a.status in (204, 304):
            await writer.drain()
            return
        wire = body
        if a.framing == "chunked":
            wire = (
                b"".join(
                    f"{len(body[i : i + 700]):x}\r\n".encode() + body[i : i + 700] + b"\r\n"
                    for i in range(0, len(body), 700)
                )
                + b"0\r\n\r\n"
            )
        if a.truncate_at is not None:
            wire = wire[: min(a.truncate_at, max(len(wire) - 1, 0))]
        writer.write(wire)
        await writer.drain()


@pytest.fixture(scope="module")
def server() -> Iterator[ScenarioServer]:
    s = ScenarioServer()
    yield s
    s.close()


REDIRECTS = [301, 302, 303, 307, 308]
STATUSES = [200, 204, 304, 400, 401, 403, 404, 410, 418, 429, 500, 502, 503, 504]
ODD_TARGETS = [
    "data:text/csv,a%0A1",
    "mailto:x@example.org",
    "ftp://127.0.0.1/x",
    "http://127.0.0.1:99999/x",
    "http://127.0.0.1:0/x",
    "https:///nohost",
    "http://[::1/x",
    "",
    "\x7f\x01",
]

headers_st = st.lists(
    st.sampled_from(
        [
            ("Content-Type", "text/csv"),
            ("ETag", '"v1"'),
            ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("Retry-After", "0"),
            ("Retry-After", "bogus"),
            ("Retry-After", "Wed, 21 Oct 2099 07:28:00 GMT"),
            ("Content-Disposition", 'attachment; filename="../../etc/passwd"'),
            ("Content-Disposition", "attachment; filename*=UTF-8''%FF%00.csv"),
            ("Content-Length", "999999"),
        ]
    ),
    max_size=3,
)


@st.composite
def answers(draw: st.DrawFn, index: int, count: int) -> Answer:
    kind = draw(st.sampled_from(["ok", "ok", "status", "redirect", "garbage", "slow"]))
    a = Answer(headers=draw(headers_st))
    if kind == "garbage":
        a.garbage = draw(st.binary(max_size=64))
    elif kind == "status":
        a.status = draw(st.sampled_from(STATUSES))
        a.body = draw(st.binary(max_size=64))
    elif kind == "redirect":
        a.status = draw(st.sampled_from(REDIRECTS))
        target = draw(
            st.one_of(
                st.integers(0, count - 1).map(lambda j: f"/{{ex}}/{j}"),
                st.sampled_from(ODD_TARGETS),
            )
        )
        a.headers.append(("Location", target))
    else:
        a.body = draw(st.binary(max_size=6000))  # the limit below is 4096 decoded bytes
        a.encoding = draw(st.sampled_from([None, None, "gzip", "deflate", "gzip, gzip", "br"]))
        a.framing = draw(st.sampled_from(["length", "chunked", "close"]))
        a.truncate_at = draw(st.none() | st.integers(0, 3000))
        if kind == "slow":
            a.delay = draw(st.sampled_from([0.05, 0.2, 0.6]))  # read timeout is 0.3 s
            a.hang = draw(st.booleans()) and draw(st.booleans())
    return a


@st.composite
def scenarios(draw: st.DrawFn) -> list[Answer]:
    count = draw(st.integers(1, 4))
    return [draw(answers(i, count)) for i in range(count)]


FAST = PipelineSettings(
    concurrency=3,
    connect_timeout=1,
    read_timeout=0.3,
    total_timeout=2,
    max_bytes=4096,
    max_retries=1,
    backoff_seconds=0.01,
    max_backoff_seconds=0.05,
    max_redirects=2,
)


def check_store(root: Path, manifest: Manifest, names: list[str]) -> None:
    assert [e.source for e in manifest.entries] == names
    assert Manifest.model_validate_json((root / "manifests/latest.json").read_bytes()) == manifest
    assert not [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".part")]
    stored = {str(p.relative_to(root)) for p in (root / "raw").rglob("*") if p.is_file()}
    named = {e.path for e in manifest.entries if e.path is not None}
    assert named <= stored, (stored, named)
    for e in manifest.entries:
        if e.status is EntryStatus.FAILED:
            assert e.error and "Traceback" not in e.error
        else:
            assert e.error is None and e.path is not None
            assert hashlib.sha256((root / e.path).read_bytes()).hexdigest() == e.sha256


_EXAMPLE = iter(range(1_000_000))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=scenarios())
def test_every_source_gets_one_entry_whatever_the_server_does(
    server: ScenarioServer, plan: list[Answer]
) -> None:
    ex = f"ex{next(_EXAMPLE)}"
    for i, a in enumerate(plan):
        a.headers = [(k, v.replace("{ex}", ex)) for k, v in a.headers]
        server.answers[f"{ex}/{i}"] = a
    wanted = [
        Source(name=f"s{i}", url=f"http://127.0.0.1:{server.port}/{ex}/{i}")
        for i in range(len(plan))
    ]
    names = [s.name for s in wanted]
    root = Path(tempfile.mkdtemp(prefix="airnub-gen-"))
    try:
        storage = LocalStorage(root)
        for run in ("r1", "r2"):
            manifest = asyncio.run(
                ingest_sources(wanted, storage=storage, settings=FAST, run_id=run)
            )
            check_store(root, manifest, names)
        # every stored file is one the latest manifest or the first run's names
        first = Manifest.model_validate_json((root / "manifests/r1.json").read_bytes())
        stored = {str(p.relative_to(root)) for p in (root / "raw").rglob("*") if p.is_file()}
        named = {e.path for m in (first, manifest) for e in m.entries if e.path}
        assert stored == named
    finally:
        shutil.rmtree(root, ignore_errors=True)
