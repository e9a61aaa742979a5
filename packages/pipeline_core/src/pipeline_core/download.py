"""Fetch one source into content-addressed storage, robustly.

`download_source` never raises for a network or HTTP problem: it returns a `failed`
`ManifestEntry` with the error text, and stored data from earlier runs stays untouched.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from pipeline_core.filenames import pick_filename
from pipeline_core.manifest import EntryStatus, ManifestEntry

if TYPE_CHECKING:
    from pipeline_core.settings import AlphaSettings
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


def make_client(settings: AlphaSettings) -> httpx.AsyncClient:
    """An HTTP client configured from settings (timeouts, redirects, user agent)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.total_timeout,
        ),
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        headers={"User-Agent": settings.user_agent},
        limits=httpx.Limits(max_connections=settings.concurrency * 2),
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
    settings: AlphaSettings,
    previous: ManifestEntry | None = None,
    headers: dict[str, str] | None = None,
) -> ManifestEntry:
    """Fetch `source` and store it at `raw/<source>/<sha256>/<filename>`.

    `headers` are added to every request (e.g. `pipeline_core.auth.auth_headers`).

    Sends If-None-Match / If-Modified-Since from `previous` when its file is still stored;
    a 304, or a body whose sha256 equals the previous one, is `unchanged` and rewrites
    nothing. Retries connect errors, timeouts, 5xx and 429 with exponential backoff
    (honouring Retry-After), all within `settings.total_timeout`.
    """
    url = str(source.url)
    base = ManifestEntry(
        source=source.name, url=url, status=EntryStatus.FAILED, format=source.resolved_format
    )
    prior_ok = (
        previous is not None and previous.path is not None and await storage.exists(previous.path)
    )
    if previous is not None and prior_ok:  # keep pointing at the last good copy
        base = base.model_copy(
            update=previous.model_dump(
                include={"sha256", "bytes", "etag", "last_modified", "path", "content_type"}
            )
        )

    attempt = 0
    try:
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
                        base,
                        headers or {},
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
                "error": f"timed out after {settings.total_timeout:g}s in total ({attempt + 1} attempts) fetching {url}"
            }
        )
    except httpx.HTTPError as exc:  # TooManyRedirects, InvalidURL, ...
        return base.model_copy(update={"error": _describe(exc, url, attempt)})


def _transport_retryable(exc: httpx.TransportError) -> bool:
    return not isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError)


def _describe(exc: Exception, url: str, attempt: int) -> str:
    kind = type(exc).__name__
    text = str(exc) or kind
    tries = f" after {attempt + 1} attempts" if attempt else ""
    if isinstance(exc, DownloadError):
        return f"{text}{tries}"
    return f"{kind}: {text} ({url}){tries}"


async def _fetch_once(
    source: Source,
    url: str,
    client: httpx.AsyncClient,
    storage: Storage,
    settings: AlphaSettings,
    previous: ManifestEntry | None,
    base: ManifestEntry,
    extra_headers: dict[str, str],
) -> ManifestEntry:
    headers = dict(extra_headers)
    if previous is not None:
        if previous.etag:
            headers["If-None-Match"] = previous.etag
        if previous.last_modified:
            headers["If-Modified-Since"] = previous.last_modified
    async with client.stream("GET", url, headers=headers) as response:
        where = str(response.url)
        if response.status_code == 304 and previous is not None:
            return base.model_copy(update={"status": EntryStatus.UNCHANGED, "error": None})
        if response.status_code != 200:
            retryable = response.status_code in RETRY_STATUSES
            raise DownloadError(
                f"HTTP {response.status_code} {response.reason_phrase} from {where}",
                retryable=retryable,
                retry_after=_retry_after(response.headers.get("Retry-After"))
                if retryable
                else None,
            )
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        if expected is not None and expected > settings.max_bytes:
            raise DownloadError(
                f"{where} declares {expected} bytes, over the limit of {settings.max_bytes} (ALPHA_MAX_BYTES)"
            )
        filename = pick_filename(url, response.headers.get("Content-Disposition"))
        digest = hashlib.sha256()
        size = 0
        async with storage.stage(f"raw/{source.name}") as staged:
            async for chunk in response.aiter_bytes(CHUNK):
                size += len(chunk)
                if size > settings.max_bytes:
                    raise DownloadError(
                        f"{where} sent more than {settings.max_bytes} bytes (ALPHA_MAX_BYTES); stopped"
                    )
                digest.update(chunk)
                staged.file.write(chunk)
            if (
                expected is not None
                and size != expected
                and "content-encoding" not in response.headers
            ):
                raise DownloadError(
                    f"truncated body from {where}: {size} of {expected} bytes (Content-Length)",
                    retryable=True,
                )
            sha = digest.hexdigest()
            path = raw_path(source.name, sha, filename)
            unchanged = previous is not None and previous.sha256 == sha
            if previous is not None and unchanged:
                path = previous.path or path
            elif not await storage.exists(path):
                await staged.commit(path)
        return ManifestEntry(
            source=source.name,
            url=url,
            status=EntryStatus.UNCHANGED if unchanged else EntryStatus.DOWNLOADED,
            sha256=sha,
            bytes=size,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            path=path,
            content_type=response.headers.get("Content-Type"),
            format=source.resolved_format,
        )
