"""Fetch a list of sources with bounded concurrency and record them in a manifest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pipeline_core.download import download_source, make_client
from pipeline_core.manifest import Manifest, ManifestEntry, read_latest, write_manifest

if TYPE_CHECKING:
    from pipeline_core.settings import AlphaSettings
    from pipeline_core.sources import Source
    from pipeline_core.storage import Storage

Fetch = Callable[..., Awaitable[ManifestEntry]]


async def _fetch_plain(
    source: Source,
    previous: ManifestEntry | None,
    client: Any,
    storage: Storage,
    settings: AlphaSettings,
) -> ManifestEntry:
    return await download_source(
        source, client=client, storage=storage, settings=settings, previous=previous
    )


async def ingest_sources(
    sources: list[Source],
    *,
    storage: Storage,
    settings: AlphaSettings,
    run_id: str,
    fetch: Fetch = _fetch_plain,
) -> Manifest:
    """Fetch every source (at most `settings.concurrency` at once) and write the manifest.

    `fetch(source, previous_entry, client, storage, settings)` does one source; flows pass
    a Prefect task here. The manifest lists every source in order, failed ones included,
    and is written as `manifests/<run_id>.json` and `manifests/latest.json`.
    """
    previous = await read_latest(storage)
    gate = asyncio.Semaphore(settings.concurrency)

    async with make_client(settings) as client:

        async def one(source: Source) -> ManifestEntry:
            async with gate:
                prior = previous.entry(source.name) if previous else None
                return await fetch(source, prior, client, storage, settings)

        entries = await asyncio.gather(*(one(s) for s in sources))

    manifest = Manifest(run_id=run_id, entries=list(entries))
    await write_manifest(storage, manifest)
    return manifest
