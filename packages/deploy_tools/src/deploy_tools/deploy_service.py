"""The deploy use case: import gate → stack up → setup apply → every project's demo run.

Front ends (the `airnub` CLI now; compose and remote modes reuse the steps) pass a `Stack` and a
`Reporter`; nothing here prints. A failed step reports its details through the reporter and
raises `DeployError` with one line saying what to do next.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deploy_tools.settings import REMOTE_DEPLOY_FILE, AirnubSettings
from deploy_tools.setup import Change, SetupFiles
from deploy_tools.stack.interface import Stack, StackError


class Reporter(Protocol):
    """What a front end shows of the steps. `progress` repeats while a step runs."""

    def step_started(self, step: str, detail: str = "") -> None:
        """A step (`entrypoints`, `stack`, `setup`, a `flow/deployment`) begins."""
        ...

    def progress(self, step: str, detail: str) -> None:
        """A running step's current state (e.g. a flow run's state and elapsed time)."""
        ...

    def step_finished(self, step: str, detail: str = "", *, ok: bool = True) -> None:
        """A step ends; `detail` is its one-line outcome."""
        ...

    def info(self, message: str) -> None:
        """A line of output (one applied object, one note)."""
        ...

    def failure(self, message: str) -> None:
        """A line about something wrong (a broken entrypoint, an invalid file)."""
        ...


class DeployError(RuntimeError):
    """A step failed; its details went to the reporter, the message says what to do next."""


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
class DeployResult:
    """What `deploy_local` leaves: where to look."""

    ui_url: str
    outputs: dict[str, Path]
    demos: list[DemoRun] = field(default_factory=list)


# -- import gate ---------------------------------------------------------------------------
def gate_files(settings: AirnubSettings, *, remote: bool = False) -> list[Path]:
    """Every project's local deployment file; with `remote`, also `deploy/prefect.yaml`."""
    files = [p.local_deploy_file for p in settings.projects]
    remote_file = settings.deploy_dir / REMOTE_DEPLOY_FILE
    if remote and remote_file.exists():
        files.append(remote_file)
    return files


def check_entrypoints(files: Sequence[Path], reporter: Reporter) -> int:
    """Import every deployment entrypoint of `files` without a server; return how many.

    Raises:
        DeployError: any is broken (each one reported).
    """
    from deploy_tools.setup import check_entrypoints as import_all

    reporter.step_started("entrypoints", "importing every deployment's flow")
    checked, problems = import_all(list(files))
    for p in problems:  # the path, not the file name: every project has a prefect.local.yaml
        reporter.failure(f"broken {_shown(p.file)}: {p.deployment}: {p.entrypoint}: {p.error}")
    if problems:
        reporter.step_finished(
            "entrypoints", f"{len(problems)} of {checked} entrypoints are broken", ok=False
        )
        raise DeployError("fix the entrypoints above before deploying")
    reporter.step_finished("entrypoints", f"all {checked} import as flows")
    return checked


def _shown(path: Path) -> str:
    """`path` relative to the current folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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
) -> list[Change]:
    """Validate every setup file, then make the server (`api_url`, default the stack's) match.

    Raises:
        DeployError: invalid files (nothing applied) or the server refused an object.
    """
    from deploy_tools.prefect_api import use_api
    from deploy_tools.setup import SetupFilesError, apply_plan, load_plan

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
    reporter.progress("setup", "applying")
    try:
        with use_api(api_url or stack.api_url):
            changes = asyncio.run(apply_plan(plan, after_pools=after_pools))
    except Exception as exc:  # the server refused something: say what, without a traceback
        reporter.step_finished("setup", f"failed: {type(exc).__name__}: {exc}", ok=False)
        reporter.failure("objects listed before this line may already be applied; fix and rerun")
        raise DeployError("setup apply stopped") from None
    for c in changes:
        reporter.info(f"  {c.kind} {c.name}: {c.action}" + (f" ({c.detail})" if c.detail else ""))
    if all(c.action in ("unchanged", "skipped") for c in changes):
        reporter.step_finished("setup", "nothing changed")
    else:
        n = sum(c.action in ("created", "updated") for c in changes)
        reporter.step_finished("setup", f"{n} of {len(changes)} objects created or updated")
    return changes


# -- demo runs -----------------------------------------------------------------------------
def run_deployment(
    stack: Stack, deployment: str, reporter: Reporter, *, timeout: float = 600.0
) -> DemoRun:
    """Run `deployment` (`flow/deployment`) through `stack`, report its state live."""
    from deploy_tools.demo_run import run_and_watch
    from deploy_tools.prefect_api import use_api

    reporter.step_started(deployment, "starting a run")

    def show(run: Any, elapsed: float) -> None:
        reporter.progress(deployment, f"{run.name} {run.state_name} ({elapsed:.0f} s)")

    try:
        with use_api(stack.api_url):
            run = asyncio.run(run_and_watch(deployment, wait_seconds=timeout, on_update=show))
    except TimeoutError as exc:
        reporter.step_finished(deployment, str(exc), ok=False)
        return DemoRun(deployment, "", "Timeout", "", ok=False, message=str(exc))
    except Exception as exc:  # the server went away or refused: one line, not a traceback
        from deploy_tools.prefect_api import server_answers

        reporter.step_finished(deployment, f"{type(exc).__name__}: {exc}", ok=False)
        if not server_answers(stack.api_url):
            raise DeployError(f"the Prefect server at {stack.api_url} stopped answering") from None
        raise DeployError(f"could not run {deployment}: {type(exc).__name__}: {exc}") from None
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


# -- the whole use case --------------------------------------------------------------------
def deploy_local(
    settings: AirnubSettings,
    stack: Stack,
    reporter: Reporter,
    *,
    demo: bool = True,
    timeout: float = 600.0,
) -> DeployResult:
    """Import gate, stack up, setup apply (the worker starts once its pool exists), demo runs.

    Raises:
        DeployError: a step failed; the stack stays up for a look at it.
    """
    if not settings.projects:
        raise DeployError(
            "no projects in [tool.airnub.projects] of pyproject.toml: nothing to deploy"
        )
    check_entrypoints(gate_files(settings), reporter)

    reporter.step_started("stack", "starting the server and the demo-data server")
    try:
        stack.up(worker=False)
    except StackError as exc:
        reporter.step_finished("stack", "did not start", ok=False)
        raise DeployError(str(exc)) from None
    reporter.step_finished("stack", f"up — API {stack.api_url}")

    # The worker starts once its pool exists as the files describe it; its start-up (~5 s)
    # overlaps the rest of the apply.
    try:
        apply_setup(settings, stack, reporter, after_pools=stack.start_worker)
    except DeployError as exc:
        raise DeployError(f"{exc}; the stack is up (`airnub stack down` stops it)") from None

    demos = run_demos(settings, stack, reporter, timeout=timeout) if demo else []
    return DeployResult(stack.ui_url, {p.name: p.data_root for p in settings.projects}, demos)
