"""`airnub stack up|down|status|logs|worker`: the local stack, in either mode."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from deploy_tools.cli.terminal import terminal
from deploy_tools.local.stack.mode import Mode, RunningMode

if TYPE_CHECKING:
    from deploy_tools.local.stack import PartStatus

app = typer.Typer(no_args_is_help=True)

ServerPort = typer.Option(
    None, "--server-port", help="Prefect server port (env AIRNUB_SERVER_PORT)."
)
DataPort = typer.Option(None, "--data-port", help="Demo-data server port (env AIRNUB_DATA_PORT).")
NoWait = typer.Option(
    False,
    "--no-wait",
    help="Refuse (exit 1) instead of waiting when another command is starting or stopping the "
    "stack of this checkout.",
)
WhichStack = typer.Option(
    RunningMode.running,
    "--mode",
    help="Which stack: running (the mode the last `up` used), process or compose.",
)


@app.command()
def up(
    *,
    mode: Mode = typer.Option(  # noqa: B008
        Mode.auto, "--mode", help="process, compose, or auto (compose when Docker answers)."
    ),
    server_port: int | None = ServerPort,
    data_port: int | None = DataPort,
    no_wait: bool = NoWait,
) -> None:
    """Start the server, demo-data server and worker on 127.0.0.1 (what is running stays)."""
    from deploy_tools.local.service import stack_lock
    from deploy_tools.local.stack import StackError, open_stack

    config = terminal.settings()
    stack = open_stack(
        mode, config, server_port=server_port, data_port=data_port, note=terminal.note
    )
    try:
        with (
            terminal.steps() as reporter,
            stack_lock(config, "stack up", reporter, wait=not no_wait),
            terminal.console.status("starting the local stack"),
        ):
            stack.up()
    except StackError as exc:
        raise terminal.fail(str(exc)) from None
    terminal.console.print(f"stack up: UI {stack.ui_url}  API {stack.api_url}")


@app.command()
def down(
    *,
    volumes: bool = typer.Option(
        False,
        "--volumes",
        help="Also delete the server's data (PostgreSQL volume / SQLite file): deployments, "
        "blocks, variables, run history. Outputs under data/ stay.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --volumes."),
    mode: RunningMode = WhichStack,
    no_wait: bool = NoWait,
) -> None:
    """Stop the stack; its data is kept (the only way to drop it is `--volumes`).

    Flow runs it stops (the worker was running or starting them) are set to Cancelled, with a
    message saying `deploy:down` stopped them; runs whose process was already gone, to Crashed.
    Temp files of interrupted runs are then removed, whatever their age.
    """
    import sys

    from deploy_tools.local.service import stop_local
    from deploy_tools.local.stack import StackError, running_stack

    if volumes and not yes:
        if not sys.stdin.isatty():
            raise terminal.fail("--volumes deletes the server's data; confirm with --yes", code=2)
        typer.confirm(
            "Delete the server's data (deployments, blocks, variables, run history)?", abort=True
        )
    config = terminal.settings()
    try:
        with terminal.steps() as reporter:
            stack = running_stack(config, mode, note=terminal.note)
            stopped = stop_local(config, stack, reporter, wait=not no_wait, volumes=volumes).stopped
    except StackError as exc:  # compose could not list or stop the containers: say why
        raise terminal.fail(str(exc)) from None
    terminal.console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    if volumes:
        terminal.console.print("the server's data was deleted")


@app.command()
def status(*, mode: RunningMode = WhichStack) -> None:
    """Health of each part of the stack; exits 1 unless all are healthy (naming what is wrong)."""
    from rich.table import Table

    from deploy_tools.local.stack import running_stack
    from deploy_tools.local.stack.lock import current_holder

    config = terminal.settings()
    if holder := current_holder(config.local_dir):
        terminal.console.print(
            f"{holder.describe()} is starting or stopping parts right now", markup=False
        )
    stack = running_stack(config, mode)
    parts = stack.status()
    table = Table("part", "pid", "health", "detail", "log", title=f"{type(stack).__name__}")
    for p in parts:
        if p.healthy:
            health = "[green]healthy[/green]"
        else:
            health = "[yellow]starting?[/yellow]" if p.pid else "[red]down[/red]"
        table.add_row(p.name, str(p.pid or "-"), health, p.detail, p.log)
    terminal.console.print(table)
    if not all(p.healthy for p in parts):
        raise terminal.fail(_unhealthy_line(parts))


def _unhealthy_line(parts: list[PartStatus]) -> str:
    """The one line `status` ends with when a part is not healthy, the server first."""
    server = next((p for p in parts if p.name == "server"), None)
    if server is not None and not server.healthy:
        if server.pid is None:
            return "the Prefect server is not running; start the stack with `airnub stack up`"
        return f"the Prefect server (pid {server.pid}) is {server.detail}; see {server.log}"
    names = ", ".join(p.name for p in parts if not p.healthy)
    return f"not healthy: {names} (`airnub stack logs <part>` shows why)"


@app.command()
def logs(
    part: str = typer.Argument("all", help="server, worker, demo-data, postgres (compose) or all"),
    *,
    lines: int = typer.Option(40, "--lines", "-n", help="Lines from the end of each log."),
    mode: RunningMode = WhichStack,
) -> None:
    """Show the end of the stack's logs (process: files under .local/logs/; compose: containers)."""
    from deploy_tools.local.stack import running_stack

    try:
        found = running_stack(terminal.settings(), mode).logs(part, lines)
    except ValueError as exc:
        raise terminal.fail(str(exc)) from None
    for log in found:
        terminal.console.rule(f"{log.name}: {log.location}")
        terminal.console.print(
            "\n".join(log.lines) if log.lines is not None else "(no log yet)", markup=False
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def worker(
    ctx: typer.Context,
    *,
    sweep_older_than: float = typer.Option(
        0, help="Remove temp files of runs older than this many seconds (0: all)."
    ),
) -> None:
    """Container entry of the compose worker: end the runs and temp files an earlier worker
    left, set umask 002, then `prefect worker start <args after -->` (`deploy_tools.local.worker`).
    """
    import os

    from deploy_tools.local.worker import run_worker

    config = terminal.settings()
    with terminal.steps() as reporter:
        api_url = os.environ.get("PREFECT_API_URL", "")
        run_worker(config, reporter, ctx.args, api_url=api_url, sweep_older_than=sweep_older_than)
