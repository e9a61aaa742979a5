"""`airnub stack up|down|status|logs`: the embedded local stack."""

from __future__ import annotations

import typer

from deploy_tools.cli._common import console, fail, project

app = typer.Typer(no_args_is_help=True)

ServerPort = typer.Option(
    None, "--server-port", help="Prefect server port (env AIRNUB_SERVER_PORT)."
)
DataPort = typer.Option(None, "--data-port", help="Demo-data server port (env AIRNUB_DATA_PORT).")


@app.command()
def up(*, server_port: int | None = ServerPort, data_port: int | None = DataPort) -> None:
    """Start the server, demo-data server and worker on 127.0.0.1 (what is running stays)."""
    from deploy_tools.stack import LocalStack, PortInUseError, StackError

    stack = LocalStack(project())
    ports = stack.ports(server_port, data_port)
    try:
        with console.status("starting the local stack"):
            stack.up(ports)
    except (PortInUseError, StackError) as exc:
        raise fail(str(exc)) from None
    console.print(f"stack up: UI {stack.ui_url(ports)}  API {stack.api_url(ports)}")


@app.command()
def down() -> None:
    """Stop the processes started by `stack up` (the database under .local/ is kept)."""
    from deploy_tools.stack import LocalStack

    stopped = LocalStack(project()).down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status() -> None:
    """Health of each part of the stack; exits 1 unless all are healthy."""
    from rich.table import Table

    from deploy_tools.stack import LocalStack

    parts = LocalStack(project()).status()
    table = Table("part", "pid", "health", "detail", "log")
    for p in parts:
        if p.healthy:
            health = "[green]healthy[/green]"
        else:
            health = "[yellow]starting?[/yellow]" if p.pid else "[red]down[/red]"
        table.add_row(p.name, str(p.pid or "-"), health, p.detail, str(p.log))
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
    from deploy_tools.stack import LocalStack

    stack = LocalStack(project())
    chosen = [p for p in (stack.server, stack.worker, stack.data) if part in ("all", p.name)]
    if not chosen:
        raise fail(f"unknown part {part!r}: expected server, worker, demo-data or all")
    for p in chosen:
        console.rule(f"{p.name}: {p.log_file}")
        if p.log_file.exists():
            console.print(
                "\n".join(p.log_file.read_text(errors="replace").splitlines()[-lines:]),
                markup=False,
            )
        else:
            console.print("(no log yet)")
