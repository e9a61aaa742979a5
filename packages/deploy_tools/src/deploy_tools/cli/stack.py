"""`airnub stack up|down|status|logs`: the embedded local stack."""

from __future__ import annotations

import typer

from deploy_tools.cli.terminal import console, fail, settings

app = typer.Typer(no_args_is_help=True)

ServerPort = typer.Option(
    None, "--server-port", help="Prefect server port (env AIRNUB_SERVER_PORT)."
)
DataPort = typer.Option(None, "--data-port", help="Demo-data server port (env AIRNUB_DATA_PORT).")


@app.command()
def up(*, server_port: int | None = ServerPort, data_port: int | None = DataPort) -> None:
    """Start the server, demo-data server and worker on 127.0.0.1 (what is running stays)."""
    from deploy_tools.stack import Mode, StackError, open_stack

    stack = open_stack(Mode.process, settings(), server_port=server_port, data_port=data_port)
    try:
        with console.status("starting the local stack"):
            stack.up()
    except StackError as exc:
        raise fail(str(exc)) from None
    console.print(f"stack up: UI {stack.ui_url}  API {stack.api_url}")


@app.command()
def down() -> None:
    """Stop the processes started by `stack up` (the database under .local/ is kept)."""
    from deploy_tools.stack import ProcessStack

    stopped = ProcessStack(settings()).down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status() -> None:
    """Health of each part of the stack; exits 1 unless all are healthy."""
    from rich.table import Table

    from deploy_tools.stack import ProcessStack

    parts = ProcessStack(settings()).status()
    table = Table("part", "pid", "health", "detail", "log")
    for p in parts:
        if p.healthy:
            health = "[green]healthy[/green]"
        else:
            health = "[yellow]starting?[/yellow]" if p.pid else "[red]down[/red]"
        table.add_row(p.name, str(p.pid or "-"), health, p.detail, p.log)
    console.print(table)
    if not all(p.healthy for p in parts):
        raise typer.Exit(1)


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
