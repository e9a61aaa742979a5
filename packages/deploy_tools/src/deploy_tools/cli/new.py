"""`airnub new project <name>`: scaffold a flows package next to the others."""

from __future__ import annotations

import typer

from deploy_tools.cli.terminal import console, fail, settings

app = typer.Typer(no_args_is_help=True)


@app.command()
def project(
    name: str = typer.Argument(..., help="Lower-case identifier, e.g. beta or sales_eu."),
    *,
    lock: bool = typer.Option(True, help="Run `uv lock` to add the package to uv.lock."),
) -> None:
    """Create packages/flows_<name>/ and deploy/projects/<name>/, and register the package."""
    from deploy_tools.project_scaffold import ScaffoldError, create_project

    root = settings().project_dir
    try:
        written = create_project(root, name, lock=lock)
    except ScaffoldError as exc:
        raise fail(f"{exc} (nothing was written)") from None
    for path in written:
        console.print(f"  wrote {path}")
    console.print(
        f"\nProject {name!r} created. Next: `hatch run deploy:local` deploys and runs it beside "
        f"the others; its flows are in packages/flows_{name}/src/flows_{name}/flows.py and its "
        f"tests run with `hatch test packages/flows_{name}`."
    )
