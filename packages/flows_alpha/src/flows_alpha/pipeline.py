"""The `alpha_pipeline` flow: ingest, then process."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State

from flows_alpha.ingest import ingest
from flows_alpha.process import process
from pipeline_core.integrations.prefect import SourcesParam, pipeline_run, sources_flow


@sources_flow("alpha_pipeline")
async def alpha_pipeline(sources: SourcesParam = None) -> State[Any]:
    """Run `ingest`, then `process` on whatever is stored (even if some sources failed).

    Ends Failed, with both sub-runs' messages, if either failed.
    """
    return await pipeline_run(ingest, process, sources)
