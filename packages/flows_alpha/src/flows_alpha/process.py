"""The `process` flow: validate and normalise what the latest ingest stored."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from flows_alpha.sources_param import SourcesParam, sources_flow
from pipeline_core.manifest import ManifestEntry
from pipeline_core.processing import ProcessSummary, SourceSummary, process_entry
from pipeline_core.sources import Source
from pipeline_core.storage import Storage

ARTIFACT_KEY = "alpha-process-summary"


@task(name="process-source", task_run_name="process-{entry.source}", cache_policy=NO_CACHE)
async def process_source_task(
    entry: ManifestEntry, source: Source | None, storage: Storage
) -> SourceSummary:
    """Prefect task around `pipeline_core.processing.process_entry`."""
    from pipeline_core.logging import get_logger

    result = await process_entry(entry, source, storage)
    log = get_logger("flows_alpha.process")
    if result.error:
        log.error("source not processed", source=entry.source, error=result.error)
    else:
        log.info(
            "source processed",
            source=entry.source,
            rows_in=result.rows_in,
            rows_out=result.rows_out,
            rows_invalid=result.rows_invalid,
            output=result.latest_path,
        )
    return result


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else "local"


@sources_flow("process")
async def process(sources: SourcesParam = None) -> State[ProcessSummary]:
    """Parse, validate and normalise every source the latest manifest has a stored copy of.

    Schemas come from `sources` (the parameter, else the `alpha_sources` Variable). Writes
    `processed/<source>/{<sha256>,latest}.jsonl` and `processed/summary.json`, and a markdown
    artifact. Ends Failed, naming them, if any stored file could not be processed.
    """
    from prefect.artifacts import acreate_markdown_artifact

    from flows_alpha.config import load_sources
    from pipeline_core.logging import configure_logging, get_logger
    from pipeline_core.manifest import read_latest
    from pipeline_core.processing import process_manifest, render_markdown
    from pipeline_core.settings import AlphaSettings
    from pipeline_core.storage import open_storage

    configure_logging()
    log = get_logger("flows_alpha.process")
    settings = AlphaSettings()
    wanted = await load_sources(sources)
    storage = await open_storage(settings.data_root, settings.storage_block)
    manifest = await read_latest(storage)
    if manifest is None:
        return Failed(
            message=f"no manifest in {storage.root_description}: run the ingest flow first"
        )
    summary = await process_manifest(
        manifest, wanted, storage=storage, run_id=_run_id(), process=process_source_task
    )
    await acreate_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=render_markdown(summary),
        description=f"Processing of manifest {manifest.run_id} in {storage.root_description}",
    )
    t = summary.totals
    log.info(
        "summary written",
        path="processed/summary.json",
        rows_in=t.rows_in,
        rows_out=t.rows_out,
        rows_invalid=t.rows_invalid,
    )
    counts = (
        f"{t.processed} of {t.sources} sources processed: {t.rows_out} of {t.rows_in} rows valid"
    )
    if summary.errors:
        names = "; ".join(f"{s.source} ({s.error})" for s in summary.errors)
        return Failed(
            message=f"{len(summary.errors)} sources could not be processed: {names}. {counts}",
            data=summary,
        )
    return Completed(message=counts, data=summary)
