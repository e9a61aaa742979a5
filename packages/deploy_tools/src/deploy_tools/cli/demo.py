"""`airnub demo run`: run the Project Alpha pipeline through the stack and follow it live."""

from __future__ import annotations

from typing import Any

import typer

from deploy_tools.cli._common import api, console, fail, project, require_server

app = typer.Typer(no_args_is_help=True)


def run_demo(api_url: str, ui_url: str, deployment: str, timeout: float) -> bool:
    """Run `deployment`, show its state live; True when it ends Completed."""
    import asyncio

    from deploy_tools.demo_run import run_and_watch

    with api(api_url), console.status(f"running {deployment}") as status:

        def show(run: Any, elapsed: float) -> None:
            status.update(
                f"{deployment}: {run.name} [bold]{run.state_name}[/bold] ({elapsed:.0f} s)"
            )

        try:
            run = asyncio.run(run_and_watch(deployment, wait_seconds=timeout, on_update=show))
        except TimeoutError as exc:
            console.print(f"[red]{exc}[/red]")
            return False
    ok = run.state is not None and run.state.is_completed()
    colour = "green" if ok else "red"
    console.print(
        f"{deployment}: run {run.name} [{colour}]{run.state_name}[/{colour}]"
        f" — {ui_url}/runs/flow-run/{run.id}"
    )
    if not ok and run.state is not None and run.state.message:
        console.print(f"  {run.state.message}", markup=False)
    return ok


@app.command()
def run(
    *,
    deployment: str = typer.Option("alpha_pipeline/local", help="flow/deployment to run."),
    timeout: float = typer.Option(600, help="Seconds to wait for a final state."),
) -> None:
    """Trigger the demo deployment; exit non-zero unless it ends Completed."""
    from deploy_tools.stack import LocalStack

    stack = LocalStack(project())
    ports = stack.recorded_ports() or stack.ports()
    require_server(stack.api_url(ports))
    if not run_demo(stack.api_url(ports), stack.ui_url(ports), deployment, timeout):
        raise fail("the demo run did not complete")
