"""`airnub check entrypoints`: the import gate, run before any deploy."""

from __future__ import annotations

from pathlib import Path

import typer

from deploy_tools.cli._common import console, err_console, project

app = typer.Typer(no_args_is_help=True)


def run_entrypoint_gate(files: list[Path]) -> bool:
    """Import every entrypoint in `files`; print each broken one; True when all load."""
    from deploy_tools.setup import check_entrypoints

    checked, problems = check_entrypoints(files)
    for p in problems:
        err_console.print(
            f"[red]broken[/red] {p.file.name}: {p.deployment}: {p.entrypoint}: {p.error}",
            markup=True,
        )
    if problems:
        err_console.print(f"{len(problems)} of {checked} entrypoints are broken")
        return False
    console.print(f"entrypoints: all {checked} import as flows")
    return True


@app.command()
def entrypoints(
    files: list[Path] = typer.Argument(  # noqa: B008
        None, help="Deployment files (default: deploy/prefect.local.yaml and deploy/prefect.yaml)."
    ),
) -> None:
    """Import every deployment entrypoint without a server; list every broken one."""
    from deploy_tools.project import LOCAL_DEPLOY_FILE, REMOTE_DEPLOY_FILE

    if not files:
        deploy_dir = project().deploy_dir
        files = [
            p
            for p in (deploy_dir / LOCAL_DEPLOY_FILE, deploy_dir / REMOTE_DEPLOY_FILE)
            if p.exists()
        ]
    if not run_entrypoint_gate(files):
        raise typer.Exit(1)
