"""Trigger a deployment and follow its flow run to a final state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def run_and_watch(
    deployment: str,
    *,
    parameters: dict[str, Any] | None = None,
    wait_seconds: float = 600.0,
    on_update: Callable[[Any, float], None] | None = None,
    poll: float = 0.5,
) -> Any:
    """Create a run of `deployment` (`flow/deployment`), poll it until final; return the FlowRun.

    `on_update(flow_run, elapsed_seconds)` is called after every poll.

    Raises:
        TimeoutError: not final after `wait_seconds` (the run keeps going).
    """
    from prefect.client.orchestration import get_client

    started = time.monotonic()
    async with get_client() as client:
        dep = await client.read_deployment_by_name(deployment)
        run = await client.create_flow_run_from_deployment(dep.id, parameters=parameters or {})
        while True:
            run = await client.read_flow_run(run.id)
            elapsed = time.monotonic() - started
            if on_update:
                on_update(run, elapsed)
            if run.state is not None and run.state.is_final():
                return run
            if elapsed > wait_seconds:
                raise TimeoutError(f"flow run {run.name} not finished after {wait_seconds:.0f} s")
            await asyncio.sleep(poll)
