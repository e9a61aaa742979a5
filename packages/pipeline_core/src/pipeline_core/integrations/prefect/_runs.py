"""The bodies of a project's ingest, process and pipeline flows, on top of pipeline_core.

A flows package names its flows and says which settings and Variable they use
(`PipelineProject`); everything else — Prefect tasks, artifacts, final states, logs — is
here, once, for every project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed
from prefect.utilities.annotations import quote

from pipeline_core.auth import SecretResolver, read_once
from pipeline_core.ingestion import ingest_sources
from pipeline_core.integrations.prefect._secrets import read_secret_block
from pipeline_core.integrations.prefect._storage import open_storage
from pipeline_core.logging import configure_logging, get_logger
from pipeline_core.manifest import Manifest, ManifestEntry, read_latest
from pipeline_core.processing import (
    ProcessSummary,
    SourceSummary,
    process_entry,
    process_manifest,
    render_markdown,
)
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source, SourcesError, parse_sources
from pipeline_core.storage import Storage
from pipeline_core.urls import redact_urls_in

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from prefect import Flow
    from prefect.client.schemas.objects import State

T = TypeVar("T")


@dataclass(frozen=True)
class PipelineProject:
    """What a project's flows need to know about it.

    Example:
        >>> p = PipelineProject("sales_eu", "Sales EU", PipelineSettings, "sales_eu_sources")
        >>> p.artifact_key("ingest-manifest")
        'sales-eu-ingest-manifest'
    """

    name: str
    title: str
    settings: type[PipelineSettings]
    sources_variable: str

    def artifact_key(self, what: str) -> str:
        """An artifact key of this project (Prefect allows lower case, digits and dashes)."""
        return re.sub(r"[^a-z0-9-]+", "-", f"{self.name}-{what}".lower())


async def load_sources(project: PipelineProject, sources: Any) -> list[Source]:
    """Validate the `sources` parameter (any value; None: not given), else the project's Variable.

    Raises:
        SourcesError: the value is missing or invalid; the message names the bad field.
    """
    if sources is not None:
        return parse_sources(sources, origin="parameter 'sources'")
    from prefect.variables import Variable

    name = project.sources_variable
    value: Any = await Variable.aget(name, default=None)
    if value is None:
        raise SourcesError(
            f"no sources: pass the 'sources' parameter or set the Prefect Variable "
            f"{name!r} (a JSON list of {{name, url, format?, schema?, auth?}})"
        )
    return parse_sources(value, origin=f"variable {name!r}")


def _as_is(value: T) -> T:
    """`quote(value)`, typed as the value: the task receives it unwrapped, and Prefect does
    not walk it looking for futures (for 200 sources that walk cost ~0.4 s per run when
    the inputs included the previous manifest and the queue)."""
    return cast(T, quote(value))


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else "local"


@task(name="download", cache_policy=NO_CACHE)
async def download(
    wanted: list[Source],
    *,
    storage: Storage,
    settings: PipelineSettings,
    run_id: str,
    secrets: SecretResolver | None = None,
) -> Manifest:
    """Prefect task around `pipeline_core.ingestion.ingest_sources`: fetch every source.

    The `settings.concurrency` lanes are coroutines inside this one task run; each lane
    logs a line of counts into it. Eight lane task runs cost the server ~0.3-0.4 s of CPU
    per run of 200 sources (their state events), one costs ~0.01 s (bench/ingest.py).
    """
    return await ingest_sources(
        wanted, storage=storage, settings=settings, run_id=run_id, secrets=secrets
    )


async def _publish_manifest(project: PipelineProject, manifest: Manifest, storage: Storage) -> None:
    from prefect.artifacts import acreate_table_artifact

    rows = [
        {
            "source": e.source,
            "url": e.url,  # redacted by ManifestEntry
            "status": e.status.value,
            "bytes": e.bytes,
            "sha256": (e.sha256 or "")[:12],
            "path": e.path,
            "error": redact_urls_in(e.error or ""),
        }
        for e in manifest.entries
    ]
    await acreate_table_artifact(
        key=project.artifact_key("ingest-manifest"),
        table=rows,
        description=(
            f"Ingest manifest `manifests/{manifest.run_id}.json` in {storage.root_description}: "
            f"{len(manifest.entries) - len(manifest.failed)} of {len(manifest.entries)} sources ok."
        ),
    )


async def ingest_run(project: PipelineProject, sources: Any) -> State[Manifest]:
    """The body of a project's ingest flow: download every source into the store.

    One bad source never stops the others; the manifest records every source. Ends Failed,
    naming the failed sources, if any failed. Sources with `auth` read their Prefect Secret
    block inside the download task, when they are fetched.
    """
    configure_logging()
    log = get_logger(f"{project.name}.ingest")
    settings = project.settings()
    wanted = await load_sources(project, sources)
    storage = await open_storage(settings.data_root, settings.storage_block)
    manifest = await download(
        _as_is(wanted),
        storage=_as_is(storage),
        settings=_as_is(settings),
        run_id=_run_id(),
        secrets=_as_is(read_once(read_secret_block)),
    )
    path = f"manifests/{manifest.run_id}.json"
    await _publish_manifest(project, manifest, storage)
    log.info("manifest written", path=path, root=storage.root_description)
    if manifest.failed:
        names = redact_urls_in(", ".join(f"{e.source} ({e.error})" for e in manifest.failed))
        return Failed(
            message=f"{len(manifest.failed)} of {len(manifest.entries)} sources failed: {names}",
            data=manifest,
        )
    return Completed(message=f"{len(manifest.entries)} sources ingested", data=manifest)


@task(name="process-source", task_run_name="process-{entry.source}", cache_policy=NO_CACHE)
async def process_source_task(
    entry: ManifestEntry, source: Source | None, storage: Storage
) -> SourceSummary:
    """Prefect task around `pipeline_core.processing.process_entry`."""
    result = await process_entry(entry, source, storage)
    log = get_logger("pipeline_core.process")
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


async def process_run(project: PipelineProject, sources: Any) -> State[ProcessSummary]:
    """The body of a project's process flow: validate and normalise what ingest stored.

    Schemas come from `sources` (the parameter, else the project's Variable). Writes
    `processed/<source>/{<sha256>,latest}.jsonl` and `processed/summary.json`, and a markdown
    artifact. Ends Failed, naming them, if any stored file could not be processed.
    """
    from prefect.artifacts import acreate_markdown_artifact

    configure_logging()
    log = get_logger(f"{project.name}.process")
    settings = project.settings()
    wanted = await load_sources(project, sources)
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
        key=project.artifact_key("process-summary"),
        markdown=render_markdown(summary, title=f"{project.title} — processing summary"),
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


async def pipeline_run(
    ingest: Flow[..., Coroutine[Any, Any, Any]],
    process: Flow[..., Coroutine[Any, Any, Any]],
    sources: Any,
) -> State[Any]:
    """The body of a project's pipeline flow: `ingest`, then `process` on whatever is stored
    (even if some sources failed). Ends Failed, with both sub-runs' messages, if either failed.
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
