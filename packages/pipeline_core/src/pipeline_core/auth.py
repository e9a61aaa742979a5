"""How a source authenticates: request headers built from a secret read at download time.

A source names a secret (in flows: a Prefect `Secret` block) instead of carrying a
credential in its URL, so the credential never passes through a parameter, a Variable,
a manifest, a log line or an artifact. The secret is read by a `SecretResolver` right
before the download and only ever ends up in the request's headers.

Example:
    >>> import asyncio
    >>> from pipeline_core.sources import Source
    >>> source = Source(name="a", url="https://example.org/a.csv", auth={"secret": "tok"})
    >>> async def resolve(name: str) -> str:
    ...     return "s3cr3t"
    >>> asyncio.run(auth_headers(source, resolve))
    {'Authorization': 'Bearer s3cr3t'}
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

SecretResolver = Callable[[str], Awaitable[str]]
"""`await resolve(name)` -> the secret's value. Raises `LookupError` (whose message holds no
secret) when there is no such secret."""

# Headers that frame the request; a credential in them would break or smuggle requests.
_CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Visible ASCII and spaces/tabs inside: no CR/LF, so a secret cannot inject a header.
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?$")


class SourceAuth(BaseModel):
    """`auth:` of a source: which secret to send, and how.

    Attributes:
        secret: name of the secret (a Prefect `Secret` block in flows).
        scheme: `bearer` sends `Authorization: Bearer <secret>`; `basic` sends
            `Authorization: Basic …` and the secret holds `user:password`; `header` sends
            the secret as the value of the header named by `header` (e.g. `X-API-Key`).
        header: the header's name; required with `scheme: header`, not allowed otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=255)
    scheme: Literal["bearer", "basic", "header"] = "bearer"
    header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")

    @model_validator(mode="after")
    def _header_only_with_header_scheme(self) -> SourceAuth:
        if self.scheme == "header" and not self.header:
            raise ValueError("scheme 'header' needs `header`, the name of the header to send")
        if self.scheme != "header" and self.header:
            raise ValueError(f"`header` is only used with scheme 'header', not {self.scheme!r}")
        if self.header and self.header.lower() in _CLIENT_HEADERS:
            raise ValueError(f"`header` {self.header!r} is set by the HTTP client itself")
        return self


def read_once(resolve: SecretResolver) -> SecretResolver:
    """`resolve`, remembering each value read: one run reads each secret once, not once per
    source (a Prefect Secret block load is an API call and an event). Failures are not
    remembered. Make one per run, so a rotated secret is picked up by the next run.
    """
    values: dict[str, str] = {}

    async def cached(name: str) -> str:
        if name not in values:
            values[name] = await resolve(name)
        return values[name]

    return cached


class Authenticated(Protocol):
    """What `auth_headers` reads of a source (`pipeline_core.sources.Source`)."""

    @property
    def name(self) -> str: ...

    @property
    def auth(self) -> SourceAuth | None: ...


class SourceAuthError(Exception):
    """A source's secret could not be read or used; the message names the source and the
    secret, never the secret's value."""


async def auth_headers(source: Authenticated, resolve: SecretResolver | None) -> dict[str, str]:
    """The headers that authenticate `source`: empty without `auth`.

    Args:
        source: the source to fetch.
        resolve: reads a secret by name; may be None when no source has `auth`.

    Raises:
        SourceAuthError: no resolver, no such secret, or a value that cannot be sent
            (empty, several lines, `basic` without `user:password`).
    """
    auth = source.auth
    if auth is None:
        return {}
    where = f"source {source.name!r}: secret {auth.secret!r}"
    if resolve is None:
        raise SourceAuthError(f"{where}: no secret resolver was given to read it")
    try:
        value = await resolve(auth.secret)
    except LookupError as exc:
        raise SourceAuthError(f"{where}: {exc}") from None
    except Exception as exc:  # a resolver's other errors may quote what they read
        raise SourceAuthError(f"{where}: could not be read ({type(exc).__name__})") from None
    if not isinstance(value, str):
        raise SourceAuthError(f"{where}: holds a {type(value).__name__}, expected text")
    value = value.strip()  # a value pasted from a file often ends with a newline
    if not _HEADER_VALUE.match(value):
        raise SourceAuthError(
            f"{where}: is empty or holds characters not allowed in an HTTP header"
        )
    if auth.scheme == "bearer":
        return {"Authorization": f"Bearer {value}"}
    if auth.scheme == "basic":
        if ":" not in value:
            raise SourceAuthError(f"{where}: scheme 'basic' expects 'user:password'")
        return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode("ascii")}
    assert auth.header is not None  # checked by SourceAuth
    return {auth.header: value}
