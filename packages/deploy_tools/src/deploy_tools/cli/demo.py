"""`airnub demo run`: run the projects' demo deployments through the stack, followed live."""

from __future__ import annotations

import typer

from deploy_tools.cli.terminal import RichReporter, fail, settings

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
    from deploy_tools.local.service import DeployError, run_demos, run_deployment
    from deploy_tools.prefect_api import server_answers
    from deploy_tools.local.stack import running_stack

    config = settings()
    stack = running_stack(config)  # the mode the last `up` used
    if not server_answers(stack.api_url):
        raise fail(f"no Prefect server answers at {stack.api_url}; start it with `airnub stack up`")
    reporter = RichReporter()
    try:
        if deployment is None:
            run_demos(config, stack, reporter, timeout=timeout)
        elif not run_deployment(stack, deployment, reporter, timeout=timeout).ok:
            raise fail("the demo run did not complete")
    except DeployError as exc:
        raise fail(str(exc)) from None
    finally:
        reporter.close()
