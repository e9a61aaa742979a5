"""A flow that runs until it is stopped: a parent with a subflow, both RUNNING for 10 min."""

from __future__ import annotations

import time

from prefect import flow


@flow(name="nap")
def nap(seconds: float) -> None:
    """Sleep inside a subflow (it runs in the parent's process)."""
    time.sleep(seconds)


@flow(name="sleeper")
def sleeper(seconds: float = 600) -> None:
    """Run `nap` for `seconds`."""
    nap(seconds)
