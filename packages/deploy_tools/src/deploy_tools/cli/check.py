"""`airnub check entrypoints`: the import gate, run before any deploy."""

from __future__ import annotations

from pathlib import Path

import typer

from deploy_tools.cli.terminal import RichReporter, settings

app = typer.Typer(no_args_is_help=True)


@app.command()
def entrypoints(
    files: list[Path] = typer.Argument(  # noqa: B008
        None,
        help="Deployment files (default: every project's prefect.local.yaml and prefect.yaml).",
    ),
) -> None:
    """Import every deployment entrypoint without a server; list every broken one."""
    from deploy_tools.local.service import DeployError, check_entrypoints, gate_files

    reporter = RichReporter()
    try:
        check_entrypoints(files or gate_files(settings(), remote=True), reporter)
    except DeployError:
        raise typer.Exit(1) from None
    finally:
        reporter.close()
