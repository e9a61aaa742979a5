"""Where the flows get their configuration: parameters first, then Prefect Variables."""

from __future__ import annotations

from typing import Any

from pipeline_core.sources import Source, SourcesError, parse_sources

SOURCES_VARIABLE = "alpha_sources"


async def load_sources(sources: Any) -> list[Source]:
    """Validate the `sources` parameter (any value; None: not given), or else the
    `alpha_sources` Prefect Variable.

    Raises:
        SourcesError: the value is missing or invalid; the message names the bad field.
    """
    if sources is not None:
        return parse_sources(sources, origin="parameter 'sources'")
    from prefect.variables import Variable

    value: Any = await Variable.aget(SOURCES_VARIABLE, default=None)
    if value is None:
        raise SourcesError(
            f"no sources: pass the 'sources' parameter or set the Prefect Variable "
            f"{SOURCES_VARIABLE!r} (a JSON list of {{name, url, format?, schema?}})"
        )
    return parse_sources(value, origin=f"variable {SOURCES_VARIABLE!r}")
