"""`airnub stack up|down|status|logs`: the embedded local stack."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from deploy_tools.cli.terminal import RichReporter, console, fail, settings

if TYPE_CHECKING:
    from deploy_tools.stack import PartStatus

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


@app.command()
def up(
    *,
    server_port: int | None = ServerPort,
    data_port: int | None = DataPort,
    no_wait: bool = NoWait,
) -> None:
    """Start the server, demo-data server and worker on 127.0.0.1 (what is running stays)."""
    from deploy_tools.deploy_service import DeployError, stack_lock
    from deploy_tools.stack import Mode, StackError, open_stack

    config = settings()
    stack = open_stack(Mode.process, config, server_port=server_port, data_port=data_port)
    try:
        with (
            stack_lock(config, "stack up", RichReporter(), wait=not no_wait),
            console.status("starting the local stack"),
        ):
            stack.up()
    except (DeployError, StackError) as exc:
        raise fail(str(exc)) from None
    console.print(f"stack up: UI {stack.ui_url}  API {stack.api_url}")


@app.command()
def down(*, no_wait: bool = NoWait) -> None:
    """Stop the processes started by `stack up` (the database under .local/ is kept).

    Flow runs the worker was running (or starting) are set to Cancelled first, with a message
    saying `deploy:down` stopped them.
    """
    from deploy_tools.deploy_service import DeployError, stop_local
    from deploy_tools.stack import ProcessStack

    config = settings()
    reporter = RichReporter()
    try:
        stopped = stop_local(config, ProcessStack(config), reporter, wait=not no_wait).stopped
    except DeployError as exc:
        raise fail(str(exc)) from None
    finally:
        reporter.close()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status() -> None:
    """Health of each part of the stack; exits 1 unless all are healthy (naming what is wrong)."""
    from rich.table import Table

    from deploy_tools.stack import ProcessStack
    from deploy_tools.stack.lock import current_holder

    config = settings()
    if holder := current_holder(config.local_dir):
        console.print(f"{holder.describe()} is starting or stopping parts right now", markup=False)
    parts = ProcessStack(config).status()
    table = Table("part", "pid", "health", "detail", "log")
    for p in parts:
        if p.healthy:
            health = "[green]healthy[/green]"
        else:
            health = "[yellow]starting?[/yellow]" if p.pid else "[red]down[/red]"
        table.add_row(p.name, str(p.pid or "-"), health, p.detail, p.log)
    console.print(table)
    if not all(p.healthy for p in parts):
        raise fail(_unhealthy_line(parts))


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
    part: str = typer.Argument("all", help="server, worker, demo-data or all"),
    *,
    lines: int = typer.Option(40, "--lines", "-n", help="Lines from the end of each log."),
) -> None:
    """Show the end of the stack's logs (files under .local/logs/)."""
    from deploy_tools.stack import ProcessStack

    try:
        found = ProcessStack(settings()).logs(part, lines)
    except ValueError as exc:
        raise fail(str(exc)) from None
    for log in found:
        console.rule(f"{log.name}: {log.location}")
        console.print(
            "\n".join(log.lines) if log.lines is not None else "(no log yet)", markup=False
        )
