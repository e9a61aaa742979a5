"""Fetch one source into content-addressed storage, robustly.

`download_source` never raises (cancellation aside): a network, HTTP, decoding or storage
problem, or any unexpected error, is a `failed` `ManifestEntry` whose error names what
happened, and data stored by earlier runs stays untouched. Every URL it records or
reports goes through `redact_url`.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import random
import ssl
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from pipeline_core.decoding import ACCEPT_ENCODING, BodyDecoder
from pipeline_core.filenames import pick_filename
from pipeline_core.manifest import EntryStatus, ManifestEntry, failed_entry
from pipeline_core.redirects import follow, park_location
from pipeline_core.storage import describe_os_error
from pipeline_core.urls import redact_url, redact_urls_in

if TYPE_CHECKING:
    from pipeline_core.settings import PipelineSettings
    from pipeline_core.sources import Source
    from pipeline_core.storage import Storage

# 64 KiB: hashed and written while still in the CPU cache; 1 MiB chunks made the whole
# download ~40% slower here (bench/ingest.py).
CHUNK = 64 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class DownloadError(Exception):
    """A fetch failed; `retryable` says whether another attempt may help."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle (~40 ms here), which
    httpx would otherwise do for every client, even one that only fetches http URLs."""
    return httpx.create_ssl_context()


def make_client(settings: PipelineSettings) -> httpx.AsyncClient:
    """An HTTP client configured from settings (timeouts, user agent, pool size).

    It follows no redirect itself: `download_source` checks each `Location` before
    following it. Bodies are read raw and decoded by `BodyDecoder`, with a cap.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.total_timeout,
        ),
        follow_redirects=False,
        event_hooks={"response": [park_location]},
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        limits=httpx.Limits(max_connections=settings.concurrency * 2),
        verify=_tls_context(),
    )


def raw_path(source: str, sha256: str, filename: str) -> str:
    """Content-addressed location of a stored file, relative to the data root."""
    return f"raw/{source}/{sha256}/{filename}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def download_source(
    source: Source,
    *,
    client: httpx.AsyncClient,
    storage: Storage,
    settings: PipelineSettings,
    previous: ManifestEntry | None = None,
    headers: Mapping[str, str] | None = None,
) -> ManifestEntry:
    """Fetch `source` and store it at `raw/<source>/<sha256>/<filename>`.

    Sends If-None-Match / If-Modified-Since from `previous` when its file is still stored;
    a 304, or a body whose sha256 equals the previous one, is `unchanged` and rewrites
    nothing. Retries connect errors, timeouts, 5xx and 429 with exponential backoff
    (honouring Retry-After), all within `settings.total_timeout`. `headers` (e.g. a
    source's `Authorization`) go to the source's origin only: a redirect to another
    origin drops them.
    """
    url = str(source.url)
    shown = redact_url(url)
    base = failed_entry(source, None, None)
    attempt = 0
    try:
        prior_ok = (
            previous is not None
            and previous.path is not None
            and await storage.exists(previous.path)
        )
        if prior_ok:  # keep pointing at the last good copy
            base = failed_entry(source, None, previous)
        async with asyncio.timeout(settings.total_timeout):
            while True:
                try:
                    return await _fetch_once(
                        source,
                        url,
                        client,
                        storage,
                        settings,
                        previous if prior_ok else None,
                        dict(headers or {}),
                    )
                except (DownloadError, httpx.TransportError) as exc:
                    retryable = (
                        exc.retryable
                        if isinstance(exc, DownloadError)
                        else _transport_retryable(exc)
                    )
                    if not retryable or attempt >= settings.max_retries:
                        return base.model_copy(update={"error": _describe(exc, url, attempt)})
                    hint = exc.retry_after if isinstance(exc, DownloadError) else None
                    delay = min(settings.max_backoff_seconds, settings.backoff_seconds * 2**attempt)
                    delay = hint if hint is not None else delay * (0.5 + random.random() / 2)
                    await asyncio.sleep(min(delay, settings.max_backoff_seconds))
                    attempt += 1
    except TimeoutError:
        return base.model_copy(
            update={
                "error": f"timed out after {settings.total_timeout:g}s in total "
                f"({attempt + 1} attempts) fetching {shown}"
            }
        )
    except Exception as exc:  # no exception type escapes: it is this source's failure
        return base.model_copy(update={"error": _describe(exc, url, attempt)})


def _transport_retryable(exc: httpx.TransportError) -> bool:
    return not isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError)


def _describe(exc: Exception, url: str, attempt: int) -> str:
    kind = type(exc).__name__
    text = redact_urls_in(str(exc) or kind)
    tries = f" after {attempt + 1} attempts" if attempt else ""
    if isinstance(exc, DownloadError):
        return f"{text}{tries}"
    return f"{kind}: {text} ({redact_url(url)}){tries}"


async def _fetch_once(
    source: Source,
    url: str,
    client: httpx.AsyncClient,
    storage: Storage,
    settings: PipelineSettings,
    previous: ManifestEntry | None,
    headers: dict[str, str],
) -> ManifestEntry:
    conditional = {}
    if previous is not None:
        if previous.etag:
            conditional["If-None-Match"] = previous.etag
        if previous.last_modified:
            conditional["If-Modified-Since"] = previous.last_modified
    try:
        response = await follow(
            client,
            url,
            conditional=conditional,
            credentials=headers,
            max_redirects=settings.max_redirects,
        )
    except ValueError as exc:  # a Location we refuse to follow
        raise DownloadError(str(exc)) from None
    try:
        return await _store_body(source, url, response, storage, settings, previous)
    finally:
        await response.aclose()


async def _store_body(
    source: Source,
    url: str,
    response: httpx.Response,
    storage: Storage,
    settings: PipelineSettings,
    previous: ManifestEntry | None,
) -> ManifestEntry:
    where = redact_url(str(response.url))
    if response.status_code == 304 and previous is not None:
        return previous.model_copy(
            update={
                "url": redact_url(url),
                "status": EntryStatus.UNCHANGED,
                "error": None,
                "format": source.resolved_format,
                "fetched_at": datetime.now(UTC),
            }
        )
    if response.status_code != 200:
        retryable = response.status_code in RETRY_STATUSES
        raise DownloadError(
            f"HTTP {response.status_code} {response.reason_phrase} from {where}",
            retryable=retryable,
            retry_after=_retry_after(response.headers.get("Retry-After")) if retryable else None,
        )
    declared = response.headers.get("Content-Length")
    expected = int(declared) if declared and declared.isdigit() else None
    encoding = response.headers.get("Content-Encoding")
    if expected is not None and encoding is None and expected > settings.max_bytes:
        raise DownloadError(
            f"{where} declares {expected} bytes, over the limit of {settings.max_bytes} ({settings.env_name('max_bytes')})"
        )
    try:
        decoder = BodyDecoder(encoding, limit=settings.max_bytes, chunk=CHUNK)
    except ValueError as exc:
        raise DownloadError(f"{exc} from {where}") from None
    filename = pick_filename(url, response.headers.get("Content-Disposition"))
    digest = hashlib.sha256()
    received = 0
    storing = f"raw/{source.name}/"
    try:
        async with storage.stage(f"raw/{source.name}") as staged:
            async for raw in response.aiter_raw(CHUNK):
                received += len(raw)
                for piece in _decoded(decoder, raw, where, settings):
                    digest.update(piece)
                    staged.file.write(piece)
            if expected is not None and received != expected:
                raise DownloadError(
                    f"truncated body from {where}: {received} of {expected} bytes (Content-Length)",
                    retryable=True,
                )
            for piece in _decoded(decoder, None, where, settings):
                digest.update(piece)
                staged.file.write(piece)
            sha = digest.hexdigest()
            path = storing = raw_path(source.name, sha, filename)
            unchanged = previous is not None and previous.sha256 == sha
            if previous is not None and unchanged:
                path = previous.path or path
            elif stored := await storage.find_stored(f"raw/{source.name}/{sha}"):
                path = stored  # these bytes are already stored, maybe under another name
            else:
                await staged.commit(path)
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise DownloadError(f"{describe_os_error(exc)} while storing {storing}") from None
    return ManifestEntry(
        source=source.name,
        url=redact_url(url),
        status=EntryStatus.UNCHANGED if unchanged else EntryStatus.DOWNLOADED,
        sha256=sha,
        bytes=decoder.decoded,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        path=path,
        content_type=response.headers.get("Content-Type"),
        format=source.resolved_format,
    )


def _decoded(
    decoder: BodyDecoder, raw: bytes | None, where: str, settings: PipelineSettings
) -> Iterator[bytes]:
    """Decode one raw chunk (None: the end of the body) piece by piece, so a highly
    compressed chunk never inflates in one go; errors become DownloadError."""
    try:
        yield from (decoder.feed(raw) if raw is not None else decoder.finish())
    except OverflowError:
        raise DownloadError(
            f"{where} sent more than {settings.max_bytes} bytes "
            f"({settings.env_name('max_bytes')}); stopped"
        ) from None
    except ValueError as exc:
        raise DownloadError(f"{exc} from {where}", retryable=decoder.truncated) from None
