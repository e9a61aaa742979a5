"""Manifest lookups."""

from __future__ import annotations

from pipeline_core.manifest import EntryStatus, Manifest, ManifestEntry


def entry(source: str, status: EntryStatus = EntryStatus.DOWNLOADED) -> ManifestEntry:
    return ManifestEntry(source=source, url=f"http://127.0.0.1/{source}.csv", status=status)


def test_entry_finds_each_source_and_none_for_unknown():
    manifest = Manifest(run_id="r", entries=[entry(f"s{k}") for k in range(1000)])
    assert all(manifest.entry(f"s{k}") is manifest.entries[k] for k in range(1000))
    assert manifest.entry("missing") is None


def test_entry_first_of_a_name_wins_and_a_new_entries_list_is_reindexed():
    manifest = Manifest(
        run_id="r", entries=[entry("a"), entry("a", EntryStatus.FAILED), entry("b")]
    )
    assert manifest.entry("a") is manifest.entries[0]
    copy = manifest.model_copy(update={"entries": [entry("c")]})
    assert copy.entry("c") is copy.entries[0]
    assert copy.entry("a") is None
    assert manifest.entry("b") is manifest.entries[2]  # the original index is untouched
