"""Fetch a list of sources with bounded concurrency and record them in a manifest.

Concurrency comes from `settings.concurrency` *lanes*: each lane takes the next source
from a shared queue until none is left. The `ingest` flow runs all lanes inside one
Prefect task run, so a run of 200 sources makes 1 task run rather than 200 (per-source
results are in the manifest, its artifact and each lane's line of counts) — task-run
overhead and server load stay flat as the source list grows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pipeline_core.auth import SourceAuthError, auth_headers
from pipeline_core.download import download_source, make_client
from pipeline_core.logging import get_logger
from pipeline_core.manifest import (
    Manifest,
    ManifestEntry,
    failed_entry,
    read_latest,
    write_manifest,
)
from pipeline_core.storage import sweep_stale
from pipeline_core.urls import redact_urls_in

if TYPE_CHECKING:
    from pipeline_core.auth import SecretResolver
    from pipeline_core.settings import PipelineSettings
    from pipeline_core.sources import Source
    from pipeline_core.storage import Storage

Lane = Callable[..., Awaitable[int]]
Work = asyncio.Queue[tuple[int, "Source"]]


async def run_lane(
    lane: int,
    work: Work,
    results: dict[int, ManifestEntry],
    *,
    previous: Manifest | None,
    client: Any,
    storage: Storage,
    settings: PipelineSettings,
    secrets: SecretResolver | None = None,
) -> int:
    """Fetch sources from `work` until it is empty; returns how many this lane did.

    A source with `auth` has its secret read through `secrets` here, right before its
    download (inside the lane, so inside the flow's task); a secret that cannot be read
    fails that source only.

    Each failure is a warning; each success is a debug line (the manifest and its artifact
    list every source), and the lane ends with one info line of counts, so a run of
    thousands of sources does not ship thousands of log records to the Prefect API.
    """
    log = get_logger("pipeline_core.ingest")
    counts: Counter[str] = Counter()
    while True:
        try:
            index, source = work.get_nowait()
        except asyncio.QueueEmpty:
            break
        prior = previous.entry(source.name) if previous else None
        try:
            headers = await auth_headers(source, secrets)
            entry = await download_source(
                source,
                client=client,
                storage=storage,
                settings=settings,
                previous=prior,
                headers=headers,
            )
        except SourceAuthError as exc:
            entry = failed_entry(source, str(exc), prior)
        except Exception as exc:  # download_source records its own failures; belt and braces
            text = redact_urls_in(str(exc))
            entry = failed_entry(source, f"unexpected {type(exc).__name__}: {text}", prior)
        results[index] = entry
        counts[entry.status.value] += 1
        if entry.error:
            log.warning("source failed", source=source.name, lane=lane, error=entry.error)
        else:
            log.debug(
                "source fetched",
                source=source.name,
                lane=lane,
                status=entry.status.value,
                bytes=entry.bytes,
            )
    done = sum(counts.values())
    log.info("lane finished", lane=lane, sources=done, **dict(sorted(counts.items())))
    return done


async def ingest_sources(
    sources: list[Source],
    *,
    storage: Storage,
    settings: PipelineSettings,
    run_id: str,
    lane: Lane = run_lane,
    secrets: SecretResolver | None = None,
) -> Manifest:
    """Fetch every source (at most `settings.concurrency` at once) and write the manifest.

    `lane` runs one lane (same signature as `run_lane`), e.g. wrapped as a Prefect task.
    `secrets` reads the secrets named by sources' `auth` (in flows: Prefect Secret blocks).
    The manifest lists every source in order, failed ones included, and is written as
    `manifests/<run_id>.json` and `manifests/latest.json`.

    Raises:
        ValueError: `sources` is empty (nothing is read or written).
        ManifestWriteError: the manifest could not be written (`latest.json` is unchanged).
    """
    if not sources:
        raise ValueError("no sources to ingest: the source list is empty")
    # Temp files of runs killed mid-download (e.g. by `deploy:down`) are never reused: drop old ones.
    if swept := await sweep_stale(storage, settings.stale_part_seconds):
        get_logger("pipeline_core.ingest").info("stale temp files removed", files=swept)
    previous = await read_latest(storage)
    work: Work = asyncio.Queue()
    for item in enumerate(sources):
        work.put_nowait(item)
    results: dict[int, ManifestEntry] = {}
    async with make_client(settings) as client:
        await asyncio.gather(
            *(
                lane(
                    k,
                    work,
                    results,
                    previous=previous,
                    client=client,
                    storage=storage,
                    settings=settings,
                    secrets=secrets,
                )
                for k in range(min(settings.concurrency, len(sources)))
            )
        )
    manifest = Manifest(run_id=run_id, entries=[results[i] for i in range(len(sources))])
    await write_manifest(storage, manifest)
    return manifest
