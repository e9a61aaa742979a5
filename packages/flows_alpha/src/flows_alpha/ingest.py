"""The `ingest` flow: download every configured source into content-addressed storage."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from prefect.utilities.annotations import quote

from flows_alpha.sources_param import SourcesParam, sources_flow
from pipeline_core.auth import SecretResolver, read_once
from pipeline_core.ingestion import ingest_sources
from pipeline_core.manifest import Manifest
from pipeline_core.settings import AlphaSettings
from pipeline_core.sources import Source
from pipeline_core.storage import Storage, open_storage
from pipeline_core.urls import redact_urls_in

T = TypeVar("T")


@task(name="download", cache_policy=NO_CACHE)
async def download(
    wanted: list[Source],
    *,
    storage: Storage,
    settings: AlphaSettings,
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


def _as_is(value: T) -> T:
    """`quote(value)`, typed as the value: the task receives it unwrapped, and Prefect does
    not walk it looking for futures (for 200 sources that walk cost ~0.4 s per run when
    the inputs included the previous manifest and the queue)."""
    return cast(T, quote(value))


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
    manifest = await download(
        _as_is(wanted),
        storage=_as_is(storage),
        settings=_as_is(settings),
        run_id=_run_id(),
        secrets=_as_is(read_once(read_secret_block)),
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
