"""The list of sources a pipeline fetches, and its validation."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from pipeline_core.auth import SourceAuth
from pipeline_core.urls import has_userinfo

ColumnType = Literal["str", "int", "float", "bool", "date", "datetime"]


class ColumnSpec(BaseModel):
    """One declared column of a tabular source."""

    model_config = ConfigDict(extra="forbid")

    type: ColumnType = "str"
    required: bool = True
    min: float | None = None
    max: float | None = None
    pattern: str | None = None


class Source(BaseModel):
    """A source to download: a unique name, an http(s) URL, an optional format and schema,
    and optional `auth` (see `pipeline_core.auth`).

    The URL may not hold a user name or password: credentials come from `auth`, so they never
    sit in a parameter, a Variable or a manifest. Errors never quote the input.

    Example:
        >>> Source(name="cities", url="http://127.0.0.1:8000/cities.csv", format="csv").name
        'cities'
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: HttpUrl
    format: Literal["csv", "json"] | None = None
    schema_: dict[str, ColumnSpec] | None = Field(default=None, alias="schema")
    auth: SourceAuth | None = None

    @model_validator(mode="after")
    def _no_credentials_in_url(self) -> Source:
        if has_userinfo(str(self.url)):
            raise ValueError(
                f"source {self.name!r}: the URL holds a user name or password; put the "
                "credential in a Prefect Secret block and name it in `auth` "
                "(docs/pipeline-ingest.md, Authentication)"
            )
        return self

    @property
    def resolved_format(self) -> str | None:
        """`format`, else guessed from the URL's suffix."""
        if self.format:
            return self.format
        match = re.search(r"\.(csv|json)$", self.url.path or "", re.IGNORECASE)
        return match.group(1).lower() if match else None


class SourcesError(ValueError):
    """The sources value is invalid; the message names each bad field."""


_SOURCES = TypeAdapter(list[Source])


def parse_sources(value: Any, *, origin: str = "sources") -> list[Source]:
    """Validate a sources value (a list of objects, or its JSON text).

    Raises:
        SourcesError: naming `origin`, the index and field of each problem.
    """
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SourcesError(f"{origin}: not valid JSON ({exc})") from exc
    try:
        sources = _SOURCES.validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{origin}[{']['.join(str(p) for p in err['loc'])}]: {err['msg']}"
            for err in exc.errors()
        )
        raise SourcesError(f"invalid {origin}: {problems}") from exc
    if not sources:
        raise SourcesError(f"invalid {origin}: the list is empty, nothing to fetch")
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if source.name in seen:
            raise SourcesError(
                f"invalid {origin}: {origin}[{i}].name {source.name!r} is a duplicate"
            )
        seen.add(source.name)
    return sources
