"""No run of the local pool outlives its process unmarked, and no temp file outlives its writer.

A flow run is RUNNING, PENDING or CANCELLING on the server until its own process says
otherwise; a process killed with its worker (`kill -9`, an OOM kill) never says anything. So:

- **Which runs are live.** Prefect 3.9's process worker starts each flow run as
  `python -m prefect.engine` in its own session (process group = its PID; the workspace
  supervisor execs the engine), records that PID as the run's `infrastructure_pid`, and gives it
  `PREFECT__FLOW_RUN_ID` and the worker's `PREFECT_HOME` in its environment. A run is live only
  while a process carrying both (this checkout's `PREFECT_HOME`, that run's id) exists
  (`flow_run_processes` reads `/proc/<pid>/environ`), so a reused PID cannot pass for it. A run
  with no recorded PID yet is live only while a worker is up (it is being submitted).
- **Orphans.** A worker killed alone leaves its flow-run child running (re-parented to init) in
  its own process group, which stopping the worker's group never reaches. Nothing can cancel or
  watch it any longer, so `end_dead_runs` (the process worker's start, `deploy:local`) and
  `stop_local` (`deploy:down`) stop it and its run ends Crashed, with a message saying so.
- **Dead runs** (no live process) end Crashed, with why and who found them; subflow runs
  (inside their parent's process, in no pool) end with their parent. Only runs whose process
  `deploy:down` really stopped end Cancelled ("stopped by deploy:down").
- **Temp files.** `sweep_temp_files` removes `pipeline_core`'s stale temp files; callers pass
  age 0 where no writer can exist (no flow-run process of the stack alive, under the stack
  lock), else the age setting (`STALE_PART_SECONDS`).

The compose worker's container start ends every interrupted run as Crashed (`CRASHED_MESSAGE`,
`deploy_tools.local.worker`): its runs live in its container, so a new container means they died.
Without `/proc` (macOS) a run counts as live while its recorded PID exists (it cannot be checked
further there) and no orphan is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

    from deploy_tools.settings import AirnubSettings

# States a run whose process is gone can never leave by itself. SCHEDULED runs are left alone:
# the next worker picks them up.
INTERRUPTED_STATES = ("RUNNING", "PENDING", "CANCELLING")
DOWN_MESSAGE = "stopped by deploy:down (airnub stack down) while {state}"
# Set by the compose worker on start: the previous worker container died with these runs in it.
CRASHED_MESSAGE = "its worker stopped while {state} (found by the next worker's start)"
GONE_MESSAGE = "its process is gone (worker killed?) while {state}; found by {found_by}"
ORPHAN_MESSAGE = (
    "its worker was gone while {state}, so nothing could cancel or watch it; "
    "{found_by} stopped its process (pid {pid})"
)
PROC = Path("/proc")


@dataclass(frozen=True)
class EndedRun:
    """A run set to a final state (`ended_as`: Cancelled or Crashed), with the state it was in
    and why (the message set on it)."""

    id: UUID
    name: str
    previous: str
    ended_as: str = "Cancelled"
    why: str = ""


@dataclass(frozen=True)
class FlowRunProcess:
    """A live flow-run process: its PID and its parent's (the worker's, unless orphaned)."""

    pid: int
    parent: int


# -- which processes are live ---------------------------------------------------------------
def flow_run_processes(prefect_home: Path) -> dict[UUID, FlowRunProcess]:
    """Run id → live process, for every flow-run process started with `PREFECT_HOME=prefect_home`
    (this checkout's worker; Linux `/proc`). Zombies and processes of other users are skipped."""
    home = f"PREFECT_HOME={prefect_home}".encode()
    found: dict[UUID, FlowRunProcess] = {}
    if not PROC.is_dir():
        return found
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")  # empty for a zombie
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if home not in environ or stat[0] == "Z":
            continue
        for item in environ:
            if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                with contextlib.suppress(ValueError):
                    run_id = UUID(item.partition(b"=")[2].decode())
                    found[run_id] = FlowRunProcess(int(entry.name), int(stat[1]))
    return found


def _pid_exists(infrastructure_pid: str | None) -> bool:
    """Without /proc: whether the recorded PID exists at all (it may have been reused)."""
    try:
        pid = int((infrastructure_pid or "").rpartition(":")[2])
    except ValueError:
        return False  # no PID recorded, or not a number
    if pid <= 0:  # kill(0 or -1) would ask about groups, not this run
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(proc: FlowRunProcess, timeout: float = 10.0) -> None:
    """SIGTERM the flow-run process's group (its own; `pid` leads it), SIGKILL it after
    `timeout` s. Returns once the process is gone."""

    def stat() -> list[str]:
        try:
            fields = (PROC / str(proc.pid) / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            return []
        return [] if fields[0] == "Z" else fields

    def alive() -> bool:
        return bool(stat())

    # Prefect's process worker makes each run lead its own group; if one does not, only it.
    leads = (fields := stat()) and int(fields[2]) == proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            (os.killpg if leads else os.kill)(proc.pid, sig)
        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)
            time.sleep(0.1)
        if not alive():
            return


# -- reading and ending runs ----------------------------------------------------------------
async def interrupted_runs(client: PrefectClient, pool: str) -> list[FlowRun]:
    """Runs of work pool `pool` that are RUNNING, PENDING or CANCELLING."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    active = FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType(s) for s in INTERRUPTED_STATES])
    )
    return await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state=active),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
    )


async def end_runs(
    client: PrefectClient, runs: Iterable[tuple[FlowRun, str, str]]
) -> list[EndedRun]:
    """Force each `(run, end_as, message)` (`end_as`: a Prefect `StateType`, CANCELLED or
    CRASHED; `{state}` in `message` becomes the run's state) and the run's interrupted subflow
    runs, to that final state. Forced: the process is stopped or gone, no rule applies."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import State, StateType

    active = FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType(s) for s in INTERRUPTED_STATES])
    )
    done: list[EndedRun] = []
    seen: set[UUID] = set()
    todo = list(runs)
    while todo:
        run, end_as, message = todo.pop(0)
        if run.id in seen:
            continue
        seen.add(run.id)
        previous = run.state_type.value if run.state_type else "unknown"
        why = message.format(state=previous)
        state = State(type=StateType(end_as), message=why)
        await client.set_flow_run_state(run.id, state, force=True)
        done.append(EndedRun(run.id, run.name, previous, state.name or end_as, why))
        # Subflows run inside their parent's process and belong to no pool: find them by parent.
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=active, parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            )
        )
        todo += [(child, end_as, message) for child in children]
    return done


async def cancel_interrupted_runs(
    pool: str, message: str = DOWN_MESSAGE, end_as: str = "CANCELLED"
) -> list[EndedRun]:
    """End every RUNNING/PENDING/CANCELLING run of work pool `pool` (and its subflow runs) as
    `end_as` with `message`, whatever its process (the compose worker's start)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await interrupted_runs(client, pool)
        return await end_runs(client, [(r, end_as, message) for r in runs])


@dataclass(frozen=True)
class RunsFound:
    """The interrupted runs of a pool, sorted by whether a process still runs them."""

    live: list[tuple[FlowRun, FlowRunProcess | None]]  # None: being submitted by a live worker
    dead: list[FlowRun]


def sort_runs(
    runs: Sequence[FlowRun],
    processes: dict[UUID, FlowRunProcess],
    *,
    worker_alive: bool,
    proc_readable: bool = True,
) -> RunsFound:
    """Live: a process of the stack carries the run's id; or no PID is recorded yet and a worker
    is up (it is submitting the run). Everything else is dead. Without /proc
    (`proc_readable` False) a recorded PID that exists counts as live."""
    live: list[tuple[FlowRun, FlowRunProcess | None]] = []
    dead: list[FlowRun] = []
    for run in runs:
        if (proc := processes.get(run.id)) is not None:
            live.append((run, proc))
        elif (not run.infrastructure_pid and worker_alive) or (
            not proc_readable and _pid_exists(run.infrastructure_pid)
        ):
            live.append((run, None))
        else:
            dead.append(run)
    return RunsFound(live, dead)


def _with_server(
    api_url: str, work: Callable[[], Coroutine[Any, Any, list[EndedRun]]]
) -> list[EndedRun]:
    """Run `work()` with the Prefect client pointed at `api_url`; [] when the server does not
    answer (or goes away meanwhile): there is nothing to tell.

    Also from inside an event loop (`start_worker` is called by the setup apply's): then in a
    thread of its own, with this context (the client's settings).
    """
    import asyncio
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    from deploy_tools.prefect_api import GONE_RETRIES, connection_failure, server_answers, use_api

    if not server_answers(api_url, timeout=2):
        return []
    try:
        with use_api(api_url, retries=GONE_RETRIES):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(work())
            context = contextvars.copy_context()
            with ThreadPoolExecutor(1) as thread:
                return thread.submit(context.run, lambda: asyncio.run(work())).result()
    except Exception as exc:
        if connection_failure(exc) is None:
            raise
        return []


def end_interrupted_runs(
    api_url: str, pool: str, message: str = DOWN_MESSAGE, end_as: str = "CANCELLED"
) -> list[EndedRun]:
    """`cancel_interrupted_runs` against the server at `api_url`; [] when it does not answer."""
    return _with_server(api_url, lambda: cancel_interrupted_runs(pool, message, end_as))


def end_runs_by_process(
    api_url: str,
    pool: str,
    prefect_home: Path,
    *,
    worker_pid: int | None,
    found_by: str,
    live_end: str | None = None,
) -> list[EndedRun]:
    """End the interrupted runs of `pool` by what their process is, and stop orphans.

    - no live process: Crashed, `GONE_MESSAGE` naming `found_by`;
    - an orphan (a live flow-run process whose parent is not the live worker `worker_pid`,
      None when no worker runs): Crashed, `ORPHAN_MESSAGE`, and its process is stopped;
    - a process of the live worker: left alone, unless `live_end` (`CANCELLED`: `deploy:down`
      is about to stop it, `DOWN_MESSAGE`; orphans are then Cancelled too, as down stops them).

    An orphan is stopped before its run is marked (on SIGTERM its engine reports itself Crashed,
    "Execution was aborted…", which would replace the why). Runs `live_end` ends are marked
    first, as `deploy:down` always did: the final state names it before the process dies.
    Subflow runs end with their parent. Returns the runs ended.
    """
    from prefect.client.orchestration import get_client

    gone = GONE_MESSAGE.format(state="{state}", found_by=found_by)
    proc_readable = PROC.is_dir()

    async def work() -> list[EndedRun]:
        async with get_client() as client:
            runs = await interrupted_runs(client, pool)
            if not runs:
                return []
            found = sort_runs(
                runs,
                flow_run_processes(prefect_home),
                worker_alive=worker_pid is not None,
                proc_readable=proc_readable,
            )
            ending = [(r, "CRASHED", gone) for r in found.dead]
            orphans = []
            for run, proc in found.live:
                if live_end is not None:
                    ending.append((run, live_end, DOWN_MESSAGE))
                elif proc is not None and proc.parent != worker_pid:
                    why = ORPHAN_MESSAGE.format(state="{state}", found_by=found_by, pid=proc.pid)
                    ending.append((run, "CRASHED", why))
                    orphans.append(proc)
            for proc in orphans:  # first: a dying engine reports its own Crashed state
                stop_process(proc)
            return await end_runs(client, ending)

    return _with_server(api_url, work)


# -- temp files of interrupted runs ----------------------------------------------------------
def sweep_temp_files(
    settings: AirnubSettings, tell: Callable[[str], None], *, max_age: float | None = None
) -> int:
    """Remove the stale temp files interrupted runs left under each project's data root.

    `pipeline_core`'s own sweep (`LocalStorage.sweep_stale`): only files named like its temp
    files and older than `max_age` (default: its own, `STALE_PART_SECONDS`) go; 0 when no writer
    can exist. `tell` hears one line per data root swept. Returns how many were removed.
    """
    from pipeline_core.storage import STALE_PART_SECONDS, LocalStorage

    total = 0
    for project in settings.projects:
        if (
            project.data_root is not None
            and project.data_root.is_dir()
            and (
                removed := LocalStorage(project.data_root).sweep_stale(
                    STALE_PART_SECONDS if max_age is None else max_age
                )
            )
        ):
            total += len(removed)
            tell(
                f"removed {len(removed)} stale temp file(s) of interrupted runs under "
                f"{project.data_root}"
            )
    return total
