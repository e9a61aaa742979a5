"""`airnub demo run`: run the projects' demo deployments through the stack, followed live."""

from __future__ import annotations

import typer

from deploy_tools.cli.terminal import terminal

app = typer.Typer(no_args_is_help=True)


@app.command()
def run(
    *,
    deployment: str | None = typer.Option(
        None, help="flow/deployment to run (default: every project's demo deployment)."
    ),
    timeout: float = typer.Option(600, help="Seconds to wait for a final state."),
) -> None:
    """Trigger the demo deployments; exit non-zero unless each ends Completed."""
    from deploy_tools.local.service import run_demos, run_deployment
    from deploy_tools.local.stack import running_stack
    from deploy_tools.prefect_api import server_answers

    config = terminal.settings()
    stack = running_stack(config)  # the mode the last `up` used
    if not server_answers(stack.api_url):
        raise terminal.fail(
            f"no Prefect server answers at {stack.api_url}; start it with `airnub stack up`"
        )
    with terminal.steps() as reporter:
        if deployment is None:
            run_demos(config, stack, reporter, timeout=timeout)
        elif not run_deployment(stack, deployment, reporter, timeout=timeout).ok:
            raise terminal.fail("the demo run did not complete")
