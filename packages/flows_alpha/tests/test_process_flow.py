"""The `alpha_process` flow against a real temporary Prefect server (the session `prefect_harness`)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows_alpha.demo_data import demo_data_dir, demo_sources
from pipeline_core.manifest import EntryStatus, Manifest, ManifestEntry, write_manifest
from pipeline_core.processing import process_stream
from pipeline_core.row_sink import RowSink
from pipeline_core.sources import parse_sources
from pipeline_core.storage import LocalStorage
from pipeline_core.validation import compile_schema

pytestmark = pytest.mark.usefixtures("prefect_harness")

BASE = "http://127.0.0.1:9"


async def _store(storage: LocalStorage, name: str, data: bytes, filename: str) -> ManifestEntry:
    sha = hashlib.sha256(data).hexdigest()
    path = f"raw/{name}/{sha}/{filename}"
    await storage.write_bytes(path, data)
    return ManifestEntry(
        source=name, url=f"{BASE}/{filename}", status=EntryStatus.DOWNLOADED,
        sha256=sha, bytes=len(data), path=path, format=filename.rsplit(".", 1)[1],
    )  # fmt: skip


async def _demo_root(root: Path, *, broken: bool) -> tuple[list[dict[str, Any]], Manifest]:
    """Raw demo files + a manifest under `root`, as an ingest run would leave them."""
    storage = LocalStorage(root)
    sources = demo_sources(BASE)
    entries = [
        await _store(storage, s["name"], (demo_data_dir() / s["url"].rsplit("/", 1)[1]).read_bytes(), s["url"].rsplit("/", 1)[1])
        for s in sources
    ]  # fmt: skip
    entries.append(
        ManifestEntry(
            source="gone", url=f"{BASE}/gone.csv", status=EntryStatus.FAILED, error="HTTP 404"
        )
    )
    sources.append({"name": "gone", "url": f"{BASE}/gone.csv"})
    if broken:
        entries.append(await _store(storage, "garbled", b'[{"a": 1}, {"a": 2', "garbled.json"))
        sources.append({"name": "garbled", "url": f"{BASE}/garbled.json"})
    manifest = Manifest(run_id="ingest-run-1", entries=entries)
    await write_manifest(storage, manifest)
    return sources, manifest


async def _artifact(flow_run_id: UUID) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert len(found) == 1
    return found[0]


async def test_process_flow_outputs_summary_artifact_and_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_logs: Any
) -> None:
    from flows_alpha.process import ARTIFACT_KEY, process

    monkeypatch.setenv("ALPHA_DATA_ROOT", str(tmp_path))
    sources, manifest = await _demo_root(tmp_path, broken=True)

    state = await process(sources=sources, return_state=True)

    # The broken source fails the run, by name, after the others were processed.
    assert state.is_failed()
    assert "garbled" in (state.message or "")
    assert "1 sources could not be processed" in (state.message or "")
    summary = json.loads((tmp_path / "processed/summary.json").read_text())
    by_name = {s["source"]: s for s in summary["sources"]}
    assert summary["manifest_run_id"] == manifest.run_id
    assert by_name["garbled"]["status"] == "error"
    assert "invalid JSON" in by_name["garbled"]["error"]
    assert by_name["gone"]["status"] == "fetch_failed"
    assert "HTTP 404" in by_name["gone"]["error"]
    assert not (tmp_path / "processed/gone").exists()
    assert not (tmp_path / "processed/garbled").exists()

    rows_in = rows_out = 0
    for source in parse_sources(demo_sources(BASE)):
        entry = manifest.entry(source.name)
        assert entry is not None
        assert entry.path is not None
        # the same file through pipeline_core alone, without Prefect
        out = io.BytesIO()
        expected = RowSink(out, keep=None)
        with (tmp_path / entry.path).open("rb") as raw:
            columns = compile_schema(source.schema_) if source.schema_ else None
            process_stream(raw, source.resolved_format or "", columns, expected)
        got = by_name[source.name]
        assert got["status"] == "processed"
        assert (got["rows_in"], got["rows_out"], got["rows_invalid"]) == (
            expected.rows_in, expected.rows_out, expected.rows_invalid,
        )  # fmt: skip
        assert expected.invalid_rows, f"demo file of {source.name} should have invalid rows"
        assert [(r["row"], r["reasons"]) for r in got["invalid_rows"]] == [
            (bad.row, bad.reasons) for bad in expected.invalid_rows
        ]
        for path in (f"processed/{source.name}/{entry.sha256}.jsonl", got["latest_path"]):
            assert (tmp_path / path).read_bytes() == out.getvalue()
        rows_in, rows_out = rows_in + expected.rows_in, rows_out + expected.rows_out
    totals = summary["totals"]
    assert (totals["rows_in"], totals["rows_out"]) == (rows_in, rows_out)
    assert totals["rows_invalid"] == rows_in - rows_out
    assert (totals["processed"], totals["errors"], totals["skipped"]) == (3, 1, 1)

    # The markdown artifact, read back through the API.
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    artifact = await _artifact(flow_run_id)
    assert artifact.key == ARTIFACT_KEY
    assert artifact.type == "markdown"
    md = artifact.data
    assert f"in **{rows_in}**, out **{rows_out}**, invalid **{rows_in - rows_out}**" in md
    for name, s in by_name.items():
        assert f"| {name} | {s['status']} | {s['rows_in']} | {s['rows_out']} |" in md
    first_bad = by_name["cities"]["invalid_rows"][0]
    assert f"| {first_bad['row']} | {first_bad['reasons'][0]}" in md

    # The per-source task logs reached the run's Prefect logs (structlog bridge).
    logs = await run_logs(flow_run_id, "source processed", 3)
    processed = [log.message for log in logs if "source processed" in log.message]
    assert len(processed) == 3
    assert any(f"rows_out={by_name['cities']['rows_out']}" in m for m in processed)


async def test_process_flow_completes_and_rerun_is_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows_alpha.process import process

    monkeypatch.setenv("ALPHA_DATA_ROOT", str(tmp_path))
    sources, _ = await _demo_root(tmp_path, broken=False)

    first = await process(sources=sources, return_state=True)
    assert first.is_completed(), first.message
    outputs = {p: p.read_bytes() for p in (tmp_path / "processed").rglob("*.jsonl")}
    # <sha256>.jsonl, latest.jsonl and <sha256>.invalid.jsonl (every demo file has invalid rows)
    assert len(outputs) == 9
    assert len([p for p in outputs if p.name.endswith(".invalid.jsonl")]) == 3
    second = await process(sources=sources, return_state=True)
    assert second.is_completed()
    assert {p: p.read_bytes() for p in (tmp_path / "processed").rglob("*.jsonl")} == outputs
    summary = await second.aresult()
    assert summary.totals.skipped == 1  # "gone" failed to fetch: reported, not an error


async def test_process_flow_without_a_manifest_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows_alpha.process import process

    monkeypatch.setenv("ALPHA_DATA_ROOT", str(tmp_path))
    state = await process(sources=demo_sources(BASE), return_state=True)
    assert state.is_failed()
    assert "no manifest" in (state.message or "")
    assert "run the ingest flow first" in (state.message or "")


def test_process_module_imports_without_a_server() -> None:
    code = "import flows_alpha.process as m; print(m.process.name)"
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "alpha_process"
