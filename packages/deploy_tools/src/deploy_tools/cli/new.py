"""`airnub new project <name>`: scaffold a project (a flows package and its deploy folder)."""

from __future__ import annotations

import typer

from deploy_tools.cli.terminal import terminal

app = typer.Typer(no_args_is_help=True)


@app.command()
def project(
    name: str = typer.Argument(..., help="Lower-case identifier, e.g. beta or sales_eu."),
    *,
    template: str = typer.Option(
        "pipeline",
        "--template",
        help="pipeline: ingest/process flows over pipeline_core; flow: one plain Prefect flow.",
    ),
    lock: bool = typer.Option(True, help="Run `uv lock` to add the package to uv.lock."),
) -> None:
    """Create packages/flows_<name>/ and deploy/projects/<name>/; no other file but uv.lock."""
    from deploy_tools.scaffold.create import ScaffoldError, create_project

    root = terminal.settings().project_dir
    try:
        written = create_project(root, name, template=template, lock=lock)
    except ScaffoldError as exc:
        raise terminal.fail(f"{exc} (nothing was written)") from None
    for path in written:
        terminal.console.print(f"  wrote {path}", markup=False)
    terminal.console.print(
        f"\nProject {name!r} created. Next: `hatch run deploy:local` deploys and runs it beside "
        f"the others (Hatch installs the new package on its next run); its flows are in "
        f"packages/flows_{name}/src/flows_{name}/flows.py, its deployments in "
        f"deploy/projects/{name}/, and its tests run with `hatch test packages/flows_{name}`. "
        f"`airnub remove project {name}` undoes this.",
        markup=False,
    )
