"""Flow runs that stopping the stack interrupts are ended, not left `RUNNING` forever.

When `stack down` stops the worker, the flow-run processes it started die with it; nothing
would ever tell the server, so their runs would stay RUNNING (or PENDING) for good. Before
and after stopping the worker, `end_interrupted_runs` sets every such run of the local pool
(`local_pool` of `[tool.airnub]`), and the subflow runs under them, to Cancelled with a
message naming `deploy:down`. The compose worker's start ends what its dead predecessor left
as Crashed instead (`deploy_tools.local.worker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

# States a run of a stopped worker can never leave by itself. SCHEDULED runs are left alone:
# the next worker picks them up.
INTERRUPTED_STATES = ("RUNNING", "PENDING", "CANCELLING")
DOWN_MESSAGE = "stopped by deploy:down (airnub stack down) while {state}"
# Set by the compose worker on start: the previous worker container died with these runs in it.
CRASHED_MESSAGE = "its worker stopped while {state} (found by the next worker's start)"


@dataclass(frozen=True)
class CancelledRun:
    """A run set to Cancelled, with the state it was in."""

    id: UUID
    name: str
    previous: str


async def cancel_interrupted_runs(
    pool: str, message: str = DOWN_MESSAGE, end_as: str = "CANCELLED"
) -> list[CancelledRun]:
    """Set RUNNING/PENDING/CANCELLING runs of work pool `pool` and their subflow runs to the
    final state of type `end_as` (a Prefect `StateType`: CANCELLED, or CRASHED), with `message`.

    Uses the Prefect client of this process (point it at the stack's API first). Runs are
    forced: their process is being stopped (or is gone), so no orchestration rule applies.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import State, StateType

    active = FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType(s) for s in INTERRUPTED_STATES])
    )
    done: list[CancelledRun] = []
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=active),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        )
        seen: set[UUID] = set()
        while runs:
            for run in runs:
                if run.id in seen:
                    continue
                seen.add(run.id)
                previous = run.state_type.value if run.state_type else "unknown"
                await client.set_flow_run_state(
                    run.id,
                    State(type=StateType(end_as), message=message.format(state=previous)),
                    force=True,
                )
                done.append(CancelledRun(run.id, run.name, previous))
            # Subflows run inside their parent's process and belong to no pool: find them by parent.
            parents = [r.id for r in runs]
            runs = [
                r
                for r in await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=active,
                        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents),
                    )
                )
                if r.id not in seen
            ]
    return done


def end_interrupted_runs(
    api_url: str, pool: str, message: str = DOWN_MESSAGE, end_as: str = "CANCELLED"
) -> list[CancelledRun]:
    """`cancel_interrupted_runs` against the server at `api_url`; [] when it does not answer.

    Called by `stack down` before and after it stops the worker: the first pass names
    `deploy:down` in the runs' state before their processes die (a killed flow run would
    otherwise report itself Crashed, or nothing), the second catches runs the worker picked
    up in between.
    """
    import asyncio

    from deploy_tools.prefect_api import GONE_RETRIES, connection_failure, server_answers, use_api

    if not server_answers(api_url, timeout=2):
        return []
    try:
        with use_api(api_url, retries=GONE_RETRIES):
            return asyncio.run(cancel_interrupted_runs(pool, message, end_as))
    except Exception as exc:
        if connection_failure(exc) is None:
            raise
        return []  # the server went first: nothing left to tell
