"""The `alpha_pipeline` flow: ingest, then process."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from flows_alpha.ingest import ingest
from flows_alpha.process import process
from flows_alpha.sources_param import SourcesParam, sources_flow


@sources_flow("alpha_pipeline")
async def alpha_pipeline(sources: SourcesParam = None) -> State[Any]:
    """Run `ingest`, then `process` on whatever is stored (even if some sources failed).

    Ends Failed, with both sub-runs' messages, if either failed.
    """
    ingested = await ingest(sources=sources, return_state=True)
    processed = await process(sources=sources, return_state=True)
    failed = [
        (name, s)
        for name, s in (("ingest", ingested), ("process", processed))
        if not s.is_completed()
    ]
    if failed:
        return Failed(message="; ".join(f"{name}: {s.message}" for name, s in failed))
    return Completed(message=f"ingest: {ingested.message}; process: {processed.message}")
