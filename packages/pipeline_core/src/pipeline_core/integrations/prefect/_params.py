"""The `sources` parameter of the flows, and the flow class that records it safely.

Prefect records a flow run's parameters when it creates the run, before the flow's own
code (and `parse_sources`) runs. Two things keep a URL's credentials out of that record:

* `SourcesParam` publishes a JSON schema whose `url` may not hold user info. Deployments
  enforce their parameter schema (`enforce_parameter_schema`, on by default in
  `deploy/`), so the Prefect server refuses such a deployment run before creating it.
* `SourcesFlow` passes every URL of the parameters it hands to Prefect through
  `redact_url`, for runs created by calling the flow in Python (and for subflows).

The parameter is typed `Any` for Prefect on purpose: when Prefect's own parameter
validation refuses a value it prints the whole value, URL included. So Prefect accepts
anything and `parse_sources` refuses it, naming fields without quoting values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from prefect import Flow
from pydantic import WithJsonSchema

from pipeline_core.urls import redact_urls_in

P = ParamSpec("P")
R = TypeVar("R")

# An http(s) URL whose authority (before the first `/`, `?` or `#`) has no `@`.
URL_WITHOUT_USERINFO = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+([/?#].*)?$"

SourcesParam = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "url"],
                        "properties": {
                            "name": {"type": "string"},
                            "url": {"type": "string", "pattern": URL_WITHOUT_USERINFO},
                            "format": {"enum": ["csv", "json", None]},
                            "schema": {"type": ["object", "null"]},
                            "auth": {"type": ["object", "null"]},
                        },
                    },
                },
                {"type": "null"},
            ],
            "description": (
                "Sources to fetch (default: the project's sources Variable). URLs may not hold "
                "credentials: use `auth` with a Secret block."
            ),
        }
    ),
]


def redact_urls_deep(value: Any) -> Any:
    """`value` (JSON-like) with every URL in its texts passed through `redact_url`."""
    if isinstance(value, str):
        return redact_urls_in(value)
    if isinstance(value, dict):
        return {k: redact_urls_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_urls_deep(v) for v in value]
    return value


class SourcesFlow(Flow[P, R]):
    """A Prefect flow whose recorded parameters never hold a URL's user info or token."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Prefect's serialisation, then every URL redacted (see the module docstring)."""
        serialized: dict[str, Any] = redact_urls_deep(super().serialize_parameters(parameters))
        return serialized


def sources_flow(name: str) -> Callable[[Callable[P, R]], SourcesFlow[P, R]]:
    """`@sources_flow("ingest")`: like `@flow(name="ingest")`, as a `SourcesFlow`."""

    def wrap(fn: Callable[P, R]) -> SourcesFlow[P, R]:
        return SourcesFlow(fn, name=name)

    return wrap
