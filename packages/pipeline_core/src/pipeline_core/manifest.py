"""Manifests: what each run fetched, as JSON documents next to the data."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, BaseModel, Field, PrivateAttr, field_validator

from pipeline_core.storage import describe_os_error
from pipeline_core.urls import redact_url

if TYPE_CHECKING:
    from pipeline_core.sources import Source
    from pipeline_core.storage import Storage

LATEST = "manifests/latest.json"


class EntryStatus(StrEnum):
    """Outcome of fetching one source."""

    DOWNLOADED = "downloaded"
    UNCHANGED = "unchanged"
    FAILED = "failed"


class ManifestEntry(BaseModel):
    """One source's outcome in one run.

    For a `failed` or `unchanged` entry, `sha256`/`path` keep pointing at the last good
    copy (if any), so a manifest always says where the current data is. `url` is stored
    redacted (`pipeline_core.urls.redact_url`), whoever builds the entry.
    """

    source: str
    url: str
    status: EntryStatus
    sha256: str | None = None
    bytes: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    path: str | None = Field(default=None, description="Stored path, relative to the data root.")
    content_type: str | None = None
    format: str | None = None
    fetched_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    error: str | None = None

    @field_validator("url")
    @classmethod
    def _redacted(cls, url: str) -> str:
        return redact_url(url)


def failed_entry(
    source: Source, error: str | None, previous: ManifestEntry | None
) -> ManifestEntry:
    """A `failed` entry of `source` that nothing was fetched for; it keeps pointing at the
    previous run's copy, if that run had one."""
    kept = (
        previous.model_dump(
            include={"sha256", "bytes", "etag", "last_modified", "path", "content_type"}
        )
        if previous is not None and previous.path
        else {}
    )
    return ManifestEntry(
        source=source.name,
        url=str(source.url),
        status=EntryStatus.FAILED,
        format=source.resolved_format,
        error=error,
        **kept,
    )


class Manifest(BaseModel):
    """Every source of one run, in the configured order."""

    run_id: str
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    entries: list[ManifestEntry]
    # (entries list indexed, source -> entry): rebuilt if `entries` is replaced
    _index: tuple[list[ManifestEntry], dict[str, ManifestEntry]] | None = PrivateAttr(None)

    def entry(self, source: str) -> ManifestEntry | None:
        """The entry of `source`, if present.

        O(1): a run looks up each of its sources in the previous manifest, so the first
        call builds a name index. Entries are not changed in place once a manifest is
        built; replacing the `entries` list rebuilds the index.
        """
        if self._index is None or self._index[0] is not self.entries:
            # reversed: the first entry of a name wins, as with a scan
            self._index = (self.entries, {e.source: e for e in reversed(self.entries)})
        return self._index[1].get(source)

    @property
    def failed(self) -> list[ManifestEntry]:
        """Entries whose fetch failed."""
        return [e for e in self.entries if e.status is EntryStatus.FAILED]


def manifest_path(run_id: str) -> str:
    """Relative path of a run's manifest."""
    return f"manifests/{run_id}.json"


class ManifestWriteError(RuntimeError):
    """The manifest could not be written; `latest.json` was left as it was."""


async def write_manifest(storage: Storage, manifest: Manifest) -> str:
    """Write the run's manifest, then `latest.json`; each write is atomic.

    Raises:
        ManifestWriteError: saying which file could not be written, why, and that
            `latest.json` still holds the previous run's manifest.
    """
    body = manifest.model_dump_json(indent=2).encode()
    path = manifest_path(manifest.run_id)
    for target in (path, LATEST):
        try:
            await storage.write_bytes(target, body)
        except Exception as exc:
            written = f"; {path} was written" if target == LATEST else ""
            raise ManifestWriteError(
                f"could not write {target} in {storage.root_description} "
                f"({describe_os_error(exc)}){written}; {LATEST} was left as it was"
            ) from exc
    return path


async def read_latest(storage: Storage) -> Manifest | None:
    """The latest manifest, or None before the first run."""
    if not await storage.exists(LATEST):
        return None
    return Manifest.model_validate_json(await storage.read_bytes(LATEST))
