"""The `alpha_ingest` flow (function `ingest`): download every configured source into content-addressed storage."""

from __future__ import annotations

from prefect.client.schemas.objects import State

from flows_alpha.project import PROJECT
from pipeline_core.integrations.prefect import SourcesParam, ingest_run, sources_flow
from pipeline_core.manifest import Manifest


@sources_flow("alpha_ingest")
async def ingest(sources: SourcesParam = None) -> State[Manifest]:
    """Download every source (the parameter, else the `alpha_sources` Variable).

    One bad source never stops the others; the manifest records every source. The run
    ends Failed, naming the failed sources, if any failed. Sources with `auth` read their
    Prefect Secret block inside the download task, when they are fetched.
    """
    return await ingest_run(PROJECT, sources)
