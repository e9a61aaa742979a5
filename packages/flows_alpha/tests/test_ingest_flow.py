"""The ingest and alpha_pipeline flows against a real Prefect server and HTTP server."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.variables import Variable
from pytest_httpserver import HTTPServer

from flows_alpha.demo_data import demo_data_dir, demo_sources
from flows_alpha.ingest import ingest
from flows_alpha.pipeline import alpha_pipeline
from pipeline_core.manifest import EntryStatus, Manifest

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def demo_server(httpserver: HTTPServer) -> str:
    for path in demo_data_dir().iterdir():
        if path.suffix in {".csv", ".json"}:
            httpserver.expect_request(f"/{path.name}").respond_with_data(path.read_bytes())
    return httpserver.url_for("/").rstrip("/")


async def run_artifact(key: str, flow_run_id: UUID):
    """The artifact `key` of one flow run (other tests' runs publish the same key)."""
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    assert len(found) == 1, f"{len(found)} artifacts {key!r} for flow run {flow_run_id}"
    return found[0]


async def test_ingest_completes_and_publishes_manifest(demo_server, data_root):
    state = await ingest(sources=demo_sources(demo_server), return_state=True)
    assert state.is_completed(), state.message
    manifest = Manifest.model_validate_json((data_root / "manifests/latest.json").read_text())
    assert [e.status for e in manifest.entries] == [EntryStatus.DOWNLOADED] * 3
    assert (data_root / f"manifests/{manifest.run_id}.json").is_file()
    assert manifest.run_id == str(state.state_details.flow_run_id)
    for entry in manifest.entries:
        assert (data_root / (entry.path or "")).read_bytes() == (
            demo_data_dir() / Path(entry.path or "").name
        ).read_bytes()
    artifact = await run_artifact("alpha-ingest-manifest", state.state_details.flow_run_id)
    assert artifact.type == "table"
    assert "3 of 3 sources ok" in (artifact.description or "")
    assert artifact.flow_run_id == state.state_details.flow_run_id


async def test_ingest_fails_naming_the_bad_source_but_records_all(
    demo_server, data_root, httpserver, run_logs
):
    httpserver.expect_request("/gone.csv").respond_with_data("", status=404)
    sources = [*demo_sources(demo_server), {"name": "gone", "url": httpserver.url_for("/gone.csv")}]
    state = await ingest(sources=sources, return_state=True)
    assert state.is_failed()
    assert "1 of 4 sources failed: gone (HTTP 404" in (state.message or "")
    manifest = Manifest.model_validate_json((data_root / "manifests/latest.json").read_text())
    assert [e.source for e in manifest.entries] == ["cities", "stations", "readings", "gone"]
    assert manifest.entry("gone").status is EntryStatus.FAILED  # type: ignore[union-attr]
    assert sum(e.status is EntryStatus.DOWNLOADED for e in manifest.entries) == 3
    # The run's Prefect logs: the failure as a warning, one line of counts per lane, and
    # no per-source success lines at the default INFO level.
    logs = await run_logs(state.state_details.flow_run_id, "lane finished", 4)
    messages = [log.message for log in logs]
    lanes = [m for m in messages if "lane finished" in m]
    assert sum(int(m.split("sources=")[1].split()[0]) for m in lanes) == 4
    assert any("failed=1" in m for m in lanes)
    assert [m for m in messages if "source failed" in m and "source=gone" in m]
    assert not [m for m in messages if "source fetched" in m]


async def test_ingest_reads_the_alpha_sources_variable(demo_server, data_root):
    await Variable.aset("alpha_sources", demo_sources(demo_server)[:1], overwrite=True)
    try:
        state = await ingest(return_state=True)
    finally:
        await Variable.aunset("alpha_sources")
    assert state.is_completed(), state.message
    manifest = Manifest.model_validate_json((data_root / "manifests/latest.json").read_text())
    assert [e.source for e in manifest.entries] == ["cities"]


async def test_invalid_alpha_sources_variable_is_a_clear_error(data_root):
    await Variable.aset("alpha_sources", [{"name": "a", "url": "not a url"}], overwrite=True)
    try:
        state = await ingest(return_state=True)
    finally:
        await Variable.aunset("alpha_sources")
    assert state.is_failed()
    message = state.message or ""
    assert "variable 'alpha_sources'[0][url]" in message, message
    assert not (data_root / "manifests").exists()  # nothing written


async def test_unchanged_rerun_rewrites_nothing(demo_server, data_root):
    first = await ingest(sources=demo_sources(demo_server), return_state=True)
    assert first.is_completed()
    raw = {p: p.stat().st_mtime_ns for p in (data_root / "raw").rglob("*") if p.is_file()}
    second = await ingest(sources=demo_sources(demo_server), return_state=True)
    assert second.is_completed()
    manifest = Manifest.model_validate_json((data_root / "manifests/latest.json").read_text())
    assert {e.status for e in manifest.entries} == {EntryStatus.UNCHANGED}
    assert {p: p.stat().st_mtime_ns for p in (data_root / "raw").rglob("*") if p.is_file()} == raw


async def test_alpha_pipeline_runs_ingest_then_process(demo_server, data_root):
    state = await alpha_pipeline(sources=demo_sources(demo_server), return_state=True)
    assert state.is_completed(), state.message
    assert (data_root / "manifests/latest.json").is_file()
    assert (data_root / "processed").is_dir()
