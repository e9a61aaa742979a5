"""The local use case: import gate → stack up → setup apply → every project's demo run, and
its inverse, `stop_local` (end the runs it interrupts, stop every part, sweep temp files).

Front ends (the `airnub` CLI) pass a `Stack` (process or compose) and a `Reporter`
(`deploy_tools.reporting`); nothing here prints. A failed step reports its details through the
reporter and raises `DeployError` with one line saying what to do next — also when the Prefect
server goes away under a step.

Safe to run twice: whatever starts or stops parts does so under the checkout's stack lock
(`stack_lock`; `deploy_tools.local.stack.lock`), so a second caller waits for the first (or, with
`wait=False`, refuses naming its PID).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_tools.local.runs import EndedRun
from deploy_tools.local.stack.interface import Stack, StackError
from deploy_tools.prefect_api import APPLY_RETRIES, GONE_RETRIES
from deploy_tools.reporting import (
    DeployError,
    Reporter,
    ServerGoneError,
    check_entrypoints,
    report_changes,
    report_partial_apply,
    server_gone_error,
)
from deploy_tools.settings import AirnubSettings
from deploy_tools.setup import Change, SetupFiles


@dataclass(frozen=True)
class DemoRun:
    """The outcome of one demo deployment's run."""

    deployment: str
    run_name: str
    state: str
    url: str
    ok: bool
    message: str | None = None


@dataclass(frozen=True)
class StopResult:
    """What `stop_local` did: runs it stopped (Cancelled), parts stopped (in order), runs it
    found with no live process (Crashed)."""

    cancelled: list[EndedRun]
    stopped: list[str]
    crashed: list[EndedRun] = field(default_factory=list)


@dataclass(frozen=True)
class DeployResult:
    """What `deploy_local` leaves: where to look."""

    ui_url: str
    outputs: dict[str, Path]
    demos: list[DemoRun] = field(default_factory=list)


# -- the checkout's stack lock -------------------------------------------------------------
@contextmanager
def stack_lock(
    settings: AirnubSettings, command: str, reporter: Reporter, *, wait: bool = True
) -> Iterator[None]:
    """Hold the checkout's stack lock as `command` for the block (parts start or stop in it).

    While another command holds it: report whom we wait for (once per holder) and wait, or with
    `wait=False` refuse.

    Raises:
        DeployError: `wait` is False and the lock is held, naming the holder's command and PID.
    """
    from deploy_tools.local.stack.lock import LockHolder, StackBusyError, StackLock

    def waiting(holder: LockHolder) -> None:
        reporter.info(f"waiting for {holder.describe()} to finish…")

    lock = StackLock(settings.local_dir, command, wait=wait, on_wait=waiting)
    try:
        lock.acquire()
    except StackBusyError as exc:
        raise DeployError(str(exc)) from None
    try:
        yield
    finally:
        lock.release()


# -- import gate ---------------------------------------------------------------------------
def gate_files(settings: AirnubSettings, *, remote: bool = False) -> list[Path]:
    """Every project's local deployment file; with `remote`, also each one's `prefect.yaml`."""
    files = [p.local_deploy_file for p in settings.projects]
    if remote:
        files += [p.remote_deploy_file for p in settings.projects if p.remote_deploy_file.is_file()]
    return files


# -- setup apply ---------------------------------------------------------------------------
def setup_files(
    settings: AirnubSettings, stack: Stack, extra_deployments: Sequence[Path] = ()
) -> list[SetupFiles]:
    """The shared folder (`deploy/`: work pools) and each project's folder, each with its values.

    `extra_deployments` are applied with the shared values (e.g. a fixture's deployment file).
    """
    base = {**os.environ, **stack.apply_env()}
    groups = [SetupFiles(settings.deploy_dir, base, tuple(extra_deployments))]
    for project in settings.projects:
        env = {**os.environ, **stack.apply_env(project)}
        groups.append(SetupFiles(project.deploy_dir, env, (project.local_deploy_file,)))
    return groups


def apply_setup(
    settings: AirnubSettings,
    stack: Stack,
    reporter: Reporter,
    *,
    extra_deployments: Sequence[Path] = (),
    after_pools: Callable[[], None] | None = None,
    api_url: str | None = None,
    prune: bool = False,
    yes: bool = False,
    dry_run: bool = False,
) -> list[Change]:
    """Validate every setup file, then make the server (`api_url`, default the stack's) match.

    With `prune`, what airnub made and no file holds is deleted after the apply succeeded
    (`deploy_tools.setup.prune`); `dry_run` lists it and applies or deletes nothing.

    Raises:
        DeployError: invalid files (nothing applied), a refused prune (nothing applied) or the
            server refused an object.
    """
    from deploy_tools.prefect_api import server_gone, use_api
    from deploy_tools.setup import PartialApplyError, SetupFilesError, apply_plan, load_plan
    from deploy_tools.setup.prune import Pruner, scope_of

    reporter.step_started("setup", "validating deploy/")
    try:
        plan = load_plan(setup_files(settings, stack, extra_deployments), base=settings.project_dir)
    except SetupFilesError as exc:
        reporter.step_finished("setup", "invalid setup files, nothing was applied:", ok=False)
        for problem in exc.problems:
            reporter.failure(f"  {problem}")
        raise DeployError("setup apply stopped") from None
    if settings.local_pool not in {p.name for p in plan.work_pools}:
        reporter.step_finished("setup", "nothing was applied", ok=False)
        reporter.failure(
            f"  no file under {settings.deploy_dir.name}/work_pools/ defines the local pool "
            f"{settings.local_pool!r} (local_pool of [tool.airnub])"
        )
        raise DeployError("setup apply stopped")
    url = api_url or stack.api_url
    scope = scope_of(settings, "local")
    pruner = Pruner(scope, url, reporter, prune=prune, yes=yes, dry_run=dry_run, step="setup")
    plan = pruner.check(plan)
    if dry_run:
        reporter.step_finished("setup", "dry run: nothing was applied or deleted")
        return []
    reporter.progress("setup", "applying")
    try:
        with use_api(url, retries=APPLY_RETRIES):
            changes = asyncio.run(apply_plan(plan, after_pools=after_pools))
    except SetupFilesError as exc:  # a deployment's pool exists nowhere: nothing written
        reporter.step_finished("setup", "nothing was applied:", ok=False)
        for problem in exc.problems:
            reporter.failure(f"  {problem}")
        raise DeployError("setup apply stopped") from None
    except PartialApplyError as exc:  # the three lists, then why
        report_partial_apply(reporter, exc)
        if (lost := server_gone(exc, url)) is not None:
            raise server_gone_error(url, "setup apply", lost) from None
        raise DeployError("setup apply stopped; fix the failed object and rerun") from None
    except Exception as exc:  # reading the server's pools failed: nothing was written
        if (lost := server_gone(exc, url)) is not None:
            reporter.step_finished("setup", "the Prefect server stopped answering", ok=False)
            raise server_gone_error(url, "setup apply", lost) from None
        reporter.step_finished("setup", f"failed: {type(exc).__name__}: {exc}", ok=False)
        raise DeployError("setup apply stopped; nothing was applied") from None
    report_changes(reporter, changes)
    return changes + pruner.finish()


# -- demo runs -----------------------------------------------------------------------------
def run_deployment(
    stack: Stack, deployment: str, reporter: Reporter, *, timeout: float = 600.0
) -> DemoRun:
    """Run `deployment` (`flow/deployment`) through `stack`, report its state live."""
    from deploy_tools.local.demo_run import run_and_watch
    from deploy_tools.prefect_api import describe, server_gone, use_api

    reporter.step_started(deployment, "starting a run")

    def show(run: Any, elapsed: float) -> None:
        reporter.progress(deployment, f"{run.name} {run.state_name} ({elapsed:.0f} s)")

    try:
        with use_api(stack.api_url, retries=GONE_RETRIES):
            run = asyncio.run(run_and_watch(deployment, wait_seconds=timeout, on_update=show))
    except TimeoutError as exc:
        reporter.step_finished(deployment, str(exc), ok=False)
        return DemoRun(deployment, "", "Timeout", "", ok=False, message=str(exc))
    except Exception as exc:  # the server went away or refused: one line, not a traceback
        if (lost := server_gone(exc, stack.api_url)) is not None:
            reporter.step_finished(deployment, "the Prefect server stopped answering", ok=False)
            raise server_gone_error(stack.api_url, f"the run of {deployment}", lost) from None
        reporter.step_finished(deployment, describe(exc), ok=False)
        raise DeployError(f"could not run {deployment}: {describe(exc)}") from None
    ok = run.state is not None and run.state.is_completed()
    url = f"{stack.ui_url}/runs/flow-run/{run.id}"
    result = DemoRun(
        deployment,
        run.name,
        str(run.state_name),
        url,
        ok,
        run.state.message if run.state is not None else None,
    )
    reporter.step_finished(deployment, f"run {run.name} {run.state_name} — {url}", ok=ok)
    if not ok and result.message:
        reporter.failure(f"  {result.message}")
    return result


def run_demos(
    settings: AirnubSettings, stack: Stack, reporter: Reporter, *, timeout: float = 600.0
) -> list[DemoRun]:
    """Run every project's demo deployment, one after the other (all of them, even after a failure).

    Raises:
        DeployError: any run did not end Completed.
    """
    runs = [
        run_deployment(stack, p.demo_deployment, reporter, timeout=timeout)
        for p in settings.projects
        if p.demo_deployment
    ]
    failed = [r.deployment for r in runs if not r.ok]
    if failed:
        worker_log = stack.logs("worker", lines=0)[0].location
        raise DeployError(
            f"the demo run of {', '.join(failed)} did not complete; worker log: {worker_log}"
        )
    return runs


# -- stopping ------------------------------------------------------------------------------
def stop_local(
    settings: AirnubSettings,
    stack: Stack,
    reporter: Reporter,
    *,
    wait: bool = True,
    volumes: bool = False,
) -> StopResult:
    """Stop every part under the stack lock; only the runs it stopped end Cancelled.

    Runs of the local pool (`local_pool`) that are RUNNING, PENDING or CANCELLING, and their
    subflow runs, are ended before the worker stops (a killed engine cannot then override the
    state), and once more after (a run picked up in between). On the process stack a run is
    Cancelled ("stopped by deploy:down") only if a live process ran it, which down then stops
    (an orphan of a killed worker included: `ProcessStack.stop_worker`); a run with no live
    process is Crashed ("its process is gone …; found by deploy:down"). On the compose stack
    every such run is in the worker container down stops: Cancelled. Then, with no writer
    left, the temp files under every data root go whatever their age. A server that does not
    answer is just stopped. `volumes`: the server's data goes too (`Stack.down`).

    Raises:
        DeployError: `wait` is False and another command holds the stack lock.
    """
    from deploy_tools.local.runs import end_interrupted_runs, end_runs_by_process, sweep_temp_files
    from deploy_tools.local.stack.process import ProcessStack

    pool = settings.local_pool
    with stack_lock(settings, "stack down", reporter, wait=wait):
        if isinstance(stack, ProcessStack):
            ended = end_runs_by_process(
                stack.api_url,
                pool,
                stack.prefect_home,
                worker_pid=stack.worker.pid(),
                found_by="deploy:down",
                live_end="CANCELLED",
            )
        else:
            ended = end_interrupted_runs(stack.api_url, pool)
        worker_stopped = stack.stop_worker()
        ended += end_interrupted_runs(stack.api_url, pool)
        stopped = (["worker"] if worker_stopped else []) + stack.down(volumes=volumes)
        try:
            sweep_temp_files(settings, reporter.info, max_age=0)  # no writer is left
        except OSError as exc:
            reporter.failure(f"temp files of interrupted runs were not swept: {exc}")
    for run in ended:
        if run.ended_as == "Cancelled":
            reporter.info(
                f"flow run {run.name}: {run.previous} → Cancelled (stopped by deploy:down)"
            )
        else:
            reporter.info(f"flow run {run.name}: {run.previous} → {run.ended_as} ({run.why})")
    return StopResult(
        [r for r in ended if r.ended_as == "Cancelled"],
        stopped,
        [r for r in ended if r.ended_as != "Cancelled"],
    )


# -- the whole use case --------------------------------------------------------------------
def deploy_local(
    settings: AirnubSettings,
    stack: Stack,
    reporter: Reporter,
    *,
    demo: bool = True,
    timeout: float = 600.0,
    wait: bool = True,
) -> DeployResult:
    """Import gate, stack up, stale temp-file sweep (unless the worker's start does it), setup
    apply (the worker starts once its pool exists), demo runs.

    The process stack's `start_worker` (`ProcessStack.start_worker`) first ends the runs no
    live process runs as Crashed and stops orphaned flow-run processes, then sweeps; the compose
    worker's container start does its own (`deploy_tools.local.worker`).

    Stack up, sweep and apply run under the checkout's stack lock (`wait=False`: refuse when
    another command holds it); the demo runs do not, so `stack down` can stop a long one.

    Raises:
        DeployError: a step failed; the stack stays up for a look at it.
    """
    if not settings.projects:
        raise DeployError(
            "no project in the workspace (a member under packages/ with a [tool.airnub.project] "
            "table in its pyproject.toml): nothing to deploy"
        )
    check_entrypoints(gate_files(settings), reporter)

    with stack_lock(settings, "deploy local", reporter, wait=wait):
        reporter.step_started("stack", "starting the server and the demo-data server")
        try:
            stack.up(worker=False)
        except StackError as exc:
            reporter.step_finished("stack", "did not start", ok=False)
            raise DeployError(str(exc)) from None
        reporter.step_finished("stack", f"up — API {stack.api_url}")

        if not stack.worker_sweeps:  # else the worker's start sweeps and ends dead runs
            from deploy_tools.local.runs import sweep_temp_files

            sweep_temp_files(settings, reporter.info)

        # The worker starts once its pool exists as the files describe it; its start-up (~5 s)
        # overlaps the rest of the apply.
        try:
            apply_setup(settings, stack, reporter, after_pools=stack.start_worker)
        except ServerGoneError:
            raise
        except DeployError as exc:
            raise DeployError(f"{exc}; the stack is up (`airnub stack down` stops it)") from None

    demos = run_demos(settings, stack, reporter, timeout=timeout) if demo else []
    outputs = {p.name: p.data_root for p in settings.projects if p.data_root is not None}
    return DeployResult(stack.ui_url, outputs, demos)
