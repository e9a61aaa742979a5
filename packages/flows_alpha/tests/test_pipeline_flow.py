"""`alpha_pipeline` ends Failed, naming the child, when either child flow fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flows_alpha.pipeline import alpha_pipeline

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def _no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_MAX_RETRIES", "0")


async def test_a_failed_ingest_fails_the_pipeline(httpserver: HTTPServer, data_root: Path) -> None:
    httpserver.expect_request("/ok.csv").respond_with_data("a,b\n1,2\n")
    httpserver.expect_request("/missing.csv").respond_with_data("gone", status=404)
    sources = [
        {"name": "ok", "url": httpserver.url_for("/ok.csv"), "format": "csv"},
        {"name": "missing", "url": httpserver.url_for("/missing.csv"), "format": "csv"},
    ]
    state = await alpha_pipeline(sources=sources, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert message.startswith("ingest: 1 of 2 sources failed: missing")
    assert "process:" not in message  # process ran on what was stored, and completed
    assert (data_root / "processed" / "summary.json").is_file()


async def test_a_failed_process_fails_the_pipeline(httpserver: HTTPServer, data_root: Path) -> None:
    httpserver.expect_request("/garbled.json").respond_with_data('[{"a": 1}, {"a": 2')
    sources = [{"name": "garbled", "url": httpserver.url_for("/garbled.json"), "format": "json"}]
    state = await alpha_pipeline(sources=sources, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert message.startswith("process: 1 sources could not be processed: garbled")
    assert "ingest:" not in message  # the download itself was fine
    assert (data_root / "manifests" / "latest.json").is_file()
