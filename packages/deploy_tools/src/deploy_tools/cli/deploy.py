"""`airnub deploy local|remote`: one-command deploys (the use case is `deploy_service`)."""

from __future__ import annotations

import typer

from deploy_tools.cli.stack import NoWait
from deploy_tools.cli.terminal import RichReporter, console, fail, settings
from deploy_tools.stack.mode import Mode

app = typer.Typer(no_args_is_help=True)


@app.command()
def local(
    *,
    mode: Mode = typer.Option(  # noqa: B008
        Mode.auto,
        help="process (local processes, SQLite), compose (containers, PostgreSQL), or auto: "
        "compose when a Docker engine answers.",
    ),
    server_port: int | None = typer.Option(
        None, help="Prefect server port (env AIRNUB_SERVER_PORT)."
    ),
    data_port: int | None = typer.Option(None, help="Demo-data port (env AIRNUB_DATA_PORT)."),
    demo: bool = typer.Option(True, help="Run every project's demo deployment at the end."),
    timeout: float = typer.Option(600, help="Seconds to wait for each demo run."),
    build: bool = typer.Option(
        False, "--build", help="compose: rebuild the worker image even when it looks up to date."
    ),
    no_wait: bool = NoWait,
) -> None:
    """Import gate, stack up, setup apply, demo runs; then print the UI URL and the outputs.

    compose mode: PostgreSQL, the server, the worker and the demo-data server in containers
    (deploy/compose.yaml); the worker image is built when missing or out of date.
    """
    from deploy_tools.deploy_service import DeployError, deploy_local
    from deploy_tools.stack import open_stack, resolve_mode

    config = settings()
    stack = open_stack(
        resolve_mode(mode, config, note=_note),
        config,
        server_port=server_port,
        data_port=data_port,
        build=build,
        note=_note,
    )
    reporter = RichReporter()
    try:
        result = deploy_local(config, stack, reporter, demo=demo, timeout=timeout, wait=not no_wait)
    except DeployError as exc:
        raise fail(str(exc)) from None
    finally:
        reporter.close()
    width = max(len(name) for name in result.outputs) + len("Outputs ")
    console.print(f"\n[bold]{'Prefect UI':<{width}}[/bold]  {result.ui_url}")
    for name, folder in result.outputs.items():
        console.print(f"[bold]{'Outputs ' + name:<{width}}[/bold]  {folder}", soft_wrap=True)
    console.print("Stop with `hatch run deploy:down`; status with `hatch run deploy:status`.")


def _note(line: str) -> None:
    console.print(line, markup=False)


@app.command()
def remote() -> None:
    """Deploy to a remote Prefect server (not implemented yet)."""
    raise fail("`deploy remote` is not implemented yet; see deploy/prefect.yaml", code=2)
