"""Repo-wide pytest hooks.

CI sets AIRNUB_REQUIRE_ALL=1: then a test skipped for a missing dependency (Docker
engine, nix, ...) fails instead, so a green CI never hides an untested part.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("AIRNUB_REQUIRE_ALL") == "1"
        and report.skipped
        and call.excinfo is not None
        and item.get_closest_marker("allow_skip") is None
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI (AIRNUB_REQUIRE_ALL=1 forbids skips): {call.excinfo.value}"
        )


@pytest.fixture(scope="session")
def prefect_harness():  # type: ignore[no-untyped-def]
    """A real, temporary Prefect server + SQLite DB, started once per session (~9 s).

    Shared by every package's flow tests (defined here so one server serves them all).
    Flows then run against it and can be inspected with `prefect.get_client()`.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def run_logs(prefect_harness: None) -> Callable[[UUID, str, int], Awaitable[list[Any]]]:
    """`await run_logs(flow_run_id, contains, expected)`: the run's Prefect logs (task runs
    included), read once `expected` of them contain `contains` (or after ~10 s): the
    log worker ships batches in the background."""

    async def read(flow_run_id: UUID, contains: str, expected: int) -> list[Any]:
        from prefect import get_client
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.logging.handlers import APILogHandler

        await APILogHandler.aflush()
        async with get_client() as client:
            for _ in range(100):
                logs = await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
                )
                if sum(contains in log.message for log in logs) >= expected:
                    break
                await asyncio.sleep(0.1)
        return list(logs)

    return read
