"""The `alpha_process` flow (function `process`): validate and normalise what the latest ingest stored."""

from __future__ import annotations

from prefect.client.schemas.objects import State

from flows_alpha.project import PROJECT
from pipeline_core.integrations.prefect import SourcesParam, process_run, sources_flow
from pipeline_core.processing import ProcessSummary

ARTIFACT_KEY = PROJECT.artifact_key("process-summary")


@sources_flow("alpha_process")
async def process(sources: SourcesParam = None) -> State[ProcessSummary]:
    """Parse, validate and normalise every source the latest manifest has a stored copy of.

    Schemas come from `sources` (the parameter, else the `alpha_sources` Variable). Writes
    `processed/<source>/{<sha256>,latest}.jsonl` and `processed/summary.json`, and a markdown
    artifact. Ends Failed, naming them, if any stored file could not be processed.
    """
    return await process_run(PROJECT, sources)
