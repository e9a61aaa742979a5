"""Repo-wide pytest hooks.

CI sets AIRNUB_REQUIRE_ALL=1: then a test skipped for a missing dependency (Docker
engine, nix, ...) fails instead, so a green CI never hides an untested part.
"""

from __future__ import annotations

import os

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
