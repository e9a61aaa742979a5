"""What the local and the remote use case share: the `Reporter` a front end passes in, the errors
they raise, and the steps both report the same way (the import gate, the applied objects).

Nothing here prints: a failed step reports its details through the reporter and raises
`DeployError` with one line saying what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from deploy_tools.settings import shown_path

if TYPE_CHECKING:
    from deploy_tools.setup import Change, PartialApplyError


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


class ServerGoneError(DeployError):
    """The Prefect server stopped answering during a step (the message is one line)."""


def server_gone_error(api_url: str, doing: str, lost: BaseException) -> ServerGoneError:
    """The one line for a server at `api_url` that went away (`lost`) during `doing`."""
    from deploy_tools.prefect_api import describe

    return ServerGoneError(
        f"the Prefect server at {api_url} stopped answering during {doing} ({describe(lost)}); "
        "`airnub stack status` shows what is running"
    )


def check_entrypoints(files: Sequence[Path], reporter: Reporter) -> int:
    """Import every deployment entrypoint of `files` without a server; return how many.

    Raises:
        DeployError: any is broken (each one reported).
    """
    from deploy_tools.setup import check_entrypoints as import_all

    reporter.step_started("entrypoints", "importing every deployment's flow")
    checked, problems = import_all(list(files))
    for p in problems:  # the path, not the file name: every project has a prefect.local.yaml
        where = shown_path(p.file.resolve(), Path.cwd())
        reporter.failure(f"broken {where}: {p.deployment}: {p.entrypoint}: {p.error}")
    if problems:
        reporter.step_finished(
            "entrypoints", f"{len(problems)} of {checked} entrypoints are broken", ok=False
        )
        raise DeployError("fix the entrypoints above before deploying")
    reporter.step_finished("entrypoints", f"all {checked} import as flows")
    return checked


def report_changes(reporter: Reporter, changes: list[Change]) -> None:
    """One line per applied object, then the `setup` step's outcome."""
    for c in changes:
        reporter.info(f"  {c.kind} {c.name}: {c.action}" + (f" ({c.detail})" if c.detail else ""))
    if all(c.action in ("unchanged", "skipped") for c in changes):
        reporter.step_finished("setup", "nothing changed")
    else:
        n = sum(c.action in ("created", "updated") for c in changes)
        reporter.step_finished("setup", f"{n} of {len(changes)} objects created or updated")


def report_partial_apply(reporter: Reporter, exc: PartialApplyError) -> None:
    """The `setup` step failed partway: what was applied, what failed, what was not applied."""
    from deploy_tools.prefect_api import connection_failure, describe

    cause = connection_failure(exc.error) or exc.error
    reporter.step_finished("setup", f"stopped at {exc.failed} ({describe(cause)})", ok=False)
    reporter.failure(f"  applied ({len(exc.applied)}):" + ("" if exc.applied else " none"))
    for c in exc.applied:
        reporter.failure(f"    {c.kind} {c.name}: {c.action}")
    reporter.failure(f"  failed: {exc.failed}")
    reporter.failure(
        f"  not applied ({len(exc.not_applied)}):" + ("" if exc.not_applied else " none")
    )
    for name in exc.not_applied:
        reporter.failure(f"    {name}")
