"""Shared fixtures for flow tests: one temporary Prefect server for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Before Prefect is imported by any test: no telemetry from test runs.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real, temporary Prefect server + SQLite DB, started once per session (~9 s).

    Flow tests request this fixture; flows then run against it and can be inspected with
    `prefect.get_client()`.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
