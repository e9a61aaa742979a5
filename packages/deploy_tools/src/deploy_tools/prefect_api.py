"""Talking to a Prefect server from this process: point the client at it, check it answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx


@contextmanager
def use_api(url: str) -> Iterator[None]:
    """Point the Prefect client in this process at `url` (over any profile setting)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def server_answers(api_url: str, timeout: float = 3.0) -> bool:
    """True when a Prefect server answers `/health` at `api_url`."""
    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False
