"""Follow HTTP redirects one checked hop at a time.

httpx would follow any `Location` it can parse and raise an exception type per oddity;
here each target is checked first (http or https, a host, a port in 1-65535), the hop
count is bounded, and credentials never follow a redirect to another origin.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

import httpx

from pipeline_core.urls import redact_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PARKED = "airnub.location"


async def park_location(response: httpx.Response) -> None:
    """httpx response hook: move `Location` out of httpx's reach.

    httpx parses a redirect's `Location` even when it does not follow it, and raises its
    own error types for odd targets (`data:`, a bad port) before `follow` could check
    them. Hooks run before that parsing, so the raw value is kept in the response's
    extensions for `follow`.
    """
    if response.status_code in REDIRECT_STATUSES and "Location" in response.headers:
        response.extensions[_PARKED] = response.headers.pop("Location")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an http(s) URL, default ports made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def redirect_target(current: str, location: str) -> str:
    """The absolute URL a `Location` header points to, if it is one we follow.

    Raises:
        ValueError: naming the (redacted) target and why it is refused.

    Example:
        >>> redirect_target("http://h/a/b", "../c.csv")
        'http://h/c.csv'
    """
    shown = redact_url(location.strip())[:200]
    try:
        target = urljoin(current, location.strip())
        parts = urlsplit(target)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"redirect to an invalid URL {shown!r} ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"redirect to {shown!r} refused: only http and https are followed")
    if not parts.hostname:
        raise ValueError(f"redirect to {shown!r} refused: no host")
    if port == 0:
        raise ValueError(f"redirect to {shown!r} refused: port 0")
    return target


async def follow(
    client: httpx.AsyncClient,
    url: str,
    *,
    conditional: Mapping[str, str],
    credentials: Mapping[str, str],
    max_redirects: int,
) -> httpx.Response:
    """GET `url`, following at most `max_redirects` checked redirects; a streamed response.

    `credentials` (e.g. `Authorization`) are sent to `url`'s origin only; `conditional`
    headers go with every hop. The caller closes the returned response.

    Raises:
        ValueError: a refused `Location`, or too many redirects.
        httpx.HTTPError: from the requests themselves.
    """
    current, send = url, {**conditional, **credentials}
    home = origin(url)
    for _ in range(max_redirects + 1):
        request = client.build_request("GET", current, headers=send)
        response = await client.send(request, stream=True)
        location = response.extensions.get(_PARKED)
        if response.status_code not in REDIRECT_STATUSES or location is None:
            return response
        await response.aclose()
        current = redirect_target(current, location)
        send = {**conditional, **(credentials if origin(current) == home else {})}
    raise ValueError(f"too many redirects (more than {max_redirects}) from {redact_url(url)}")
