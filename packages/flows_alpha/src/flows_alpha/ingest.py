"""The `ingest` flow: download every configured source into content-addressed storage."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from prefect.utilities.annotations import quote

from flows_alpha.sources_param import SourcesParam, sources_flow
from pipeline_core.auth import read_once
from pipeline_core.ingestion import ingest_sources, run_lane
from pipeline_core.manifest import Manifest
from pipeline_core.settings import AlphaSettings
from pipeline_core.storage import Storage, open_storage
from pipeline_core.urls import redact_urls_in


@task(name="download-lane", task_run_name="download-lane-{lane}", cache_policy=NO_CACHE)
async def download_lane(lane: int, work: Any, results: Any, **kwargs: Any) -> int:
    """Prefect task around `pipeline_core.ingestion.run_lane`: fetch queued sources."""
    return await run_lane(lane, work, results, **kwargs)


async def _lane(lane: int, work: Any, results: Any, **kwargs: Any) -> int:
    """Run one lane as a task, its inputs `quote`d: Prefect would otherwise walk every
    object (the queue, the previous manifest, the HTTP client) looking for futures, which
    cost ~0.4 s per run of 200 sources (bench/ingest.py)."""
    quoted = {k: quote(v) for k, v in kwargs.items()}
    return int(await download_lane(lane, quote(work), quote(results), **quoted))


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else "local"


async def _publish(manifest: Manifest, storage: Storage) -> None:
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
        key="alpha-ingest-manifest",
        table=rows,
        description=(
            f"Ingest manifest `manifests/{manifest.run_id}.json` in {storage.root_description}: "
            f"{len(manifest.entries) - len(manifest.failed)} of {len(manifest.entries)} sources ok."
        ),
    )


@sources_flow("ingest")
async def ingest(sources: SourcesParam = None) -> State[Manifest]:
    """Download every source (the parameter, else the `alpha_sources` Variable).

    One bad source never stops the others; the manifest records every source. The run
    ends Failed, naming the failed sources, if any failed. Sources with `auth` read their
    Prefect Secret block inside the download task, when they are fetched.
    """
    from flows_alpha.config import load_sources
    from flows_alpha.secret_blocks import read_secret_block
    from pipeline_core.logging import configure_logging, get_logger

    configure_logging()
    log = get_logger("flows_alpha.ingest")
    settings = AlphaSettings()
    wanted = await load_sources(sources)
    storage = await open_storage(settings.data_root, settings.storage_block)
    manifest = await ingest_sources(
        wanted,
        storage=storage,
        settings=settings,
        run_id=_run_id(),
        lane=_lane,
        secrets=read_once(read_secret_block),
    )
    path = f"manifests/{manifest.run_id}.json"
    await _publish(manifest, storage)
    log.info("manifest written", path=path, root=storage.root_description)
    if manifest.failed:
        names = redact_urls_in(", ".join(f"{e.source} ({e.error})" for e in manifest.failed))
        return Failed(
            message=f"{len(manifest.failed)} of {len(manifest.entries)} sources failed: {names}",
            data=manifest,
        )
    return Completed(message=f"{len(manifest.entries)} sources ingested", data=manifest)
