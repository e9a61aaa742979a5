"""`airnub check entrypoints`: the import gate, run before any deploy."""

from __future__ import annotations

from pathlib import Path

import typer

from deploy_tools.cli.terminal import terminal

app = typer.Typer(no_args_is_help=True)


@app.command()
def entrypoints(
    files: list[Path] = typer.Argument(  # noqa: B008
        None,
        help="Deployment files (default: every project's prefect.local.yaml and prefect.yaml).",
    ),
) -> None:
    """Import every deployment entrypoint without a server; list every broken one."""
    from deploy_tools.local.service import gate_files
    from deploy_tools.reporting import check_entrypoints

    with terminal.steps() as reporter:
        check_entrypoints(files or gate_files(terminal.settings(), remote=True), reporter)
