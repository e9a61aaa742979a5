"""Through Prefect: one source's odd failure stays that source's; an empty list is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flows_alpha.ingest import ingest
from pipeline_core.manifest import EntryStatus, Manifest

pytestmark = pytest.mark.usefixtures("prefect_harness")

GOOD = b"id,value\n1,10\n"


async def test_redirect_to_data_url_fails_only_that_source(httpserver: HTTPServer, data_root: Path):
    httpserver.expect_request("/odd.csv").respond_with_data(
        "", status=302, headers={"Location": "data:,x"}
    )
    httpserver.expect_request("/good.csv").respond_with_data(GOOD)
    state = await ingest(
        sources=[
            {"name": "odd", "url": httpserver.url_for("/odd.csv")},
            {"name": "good", "url": httpserver.url_for("/good.csv")},
        ],
        return_state=True,
    )
    assert state.is_failed()
    assert "1 of 2 sources failed: odd (redirect to 'data:,x' refused" in (state.message or "")
    manifest = Manifest.model_validate_json((data_root / "manifests/latest.json").read_bytes())
    assert [e.status for e in manifest.entries] == [EntryStatus.FAILED, EntryStatus.DOWNLOADED]


async def test_empty_source_list_is_refused_and_latest_untouched(
    httpserver: HTTPServer, data_root: Path
):
    httpserver.expect_request("/good.csv").respond_with_data(GOOD)
    first = await ingest(
        sources=[{"name": "good", "url": httpserver.url_for("/good.csv")}], return_state=True
    )
    assert first.is_completed(), first.message
    before = (data_root / "manifests/latest.json").read_bytes()
    state = await ingest(sources=[], return_state=True)
    assert state.is_failed()
    assert "the list is empty, nothing to fetch" in (state.message or "")
    assert (data_root / "manifests/latest.json").read_bytes() == before
