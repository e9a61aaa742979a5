"""Talking to a Prefect server from this process: point the client at it, check it answers, and
tell "the server went away" apart from other failures, to say it in one line.

Prefect's client retries a lost connection up to `PREFECT_CLIENT_MAX_RETRIES` times with an
exponential back-off (2 + 4 + … s, about a minute with the default 5): against the local stack a
server that stopped answering is gone, so callers pass `use_api(url, retries=GONE_RETRIES)`. The
error then arrives wrapped in exception groups and `__cause__` chains (hundreds of traceback lines);
`connection_failure` digs out the transport error, `describe` makes it one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

# How often the Prefect client retries a lost connection (its default, 5 with back-off, is about
# a minute): where a server that stopped answering is gone (the local stack, a probe), once;
# while applying objects, twice.
GONE_RETRIES = 1
APPLY_RETRIES = 2


@contextmanager
def use_api(url: str, *, retries: int | None = None) -> Iterator[None]:
    """Point the Prefect client in this process at `url` (over any profile setting).

    `retries`: how often the client retries a lost connection (default: Prefect's setting).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: url}
    if retries is not None:
        updates[PREFECT_CLIENT_MAX_RETRIES] = retries
    with temporary_settings(updates=updates):
        yield


def answers(url: str, timeout: float = 3.0) -> bool:
    """True when a GET of `url` answers 200 (the one health probe of the stack's servers)."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def server_answers(api_url: str, timeout: float = 3.0) -> bool:
    """True when a Prefect server answers `/health` at `api_url`."""
    return answers(f"{api_url}/health", timeout)


def connection_failure(exc: BaseException) -> BaseException | None:
    """The transport-level error in `exc`, its causes or its exception-group members, if any.

    Example:
        >>> connection_failure(RuntimeError("x")) is None
        True
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, httpx.TransportError | ConnectionError):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def describe(error: BaseException) -> str:
    """`ConnectError: All connection attempts failed`: type and first line, or just the type.

    Example:
        >>> describe(ValueError("bad\\nmore"))
        'ValueError: bad'
    """
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def server_gone(exc: BaseException, api_url: str) -> BaseException | None:
    """What says the server at `api_url` went away under `exc`, or None when it still answers.

    A transport error anywhere in `exc` counts; so does a server that no longer answers `/health`
    (then `exc` itself is returned).
    """
    lost = connection_failure(exc)
    if lost is not None:
        return lost
    return None if server_answers(api_url) else exc


def version_skew(server: str, client: str) -> str:
    """How far the server's Prefect `server` is from this checkout's `client`: "same" (same
    major and minor), "minor" or "major"; "unknown" when `server` is not a version.

    Example:
        >>> version_skew("3.4.2", "3.9.1"), version_skew("4.0.0", "3.9.1")
        ('minor', 'major')
    """
    from packaging.version import InvalidVersion, Version

    try:
        theirs, ours = Version(server), Version(client)
    except InvalidVersion:
        return "unknown"
    if theirs.major != ours.major:
        return "major"
    return "same" if theirs.minor == ours.minor else "minor"
