"""`airnub setup apply`: work pools, variables, blocks and deployments from deploy/."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import typer

from deploy_tools.cli._common import api, console, err_console, fail, project, require_server

app = typer.Typer(no_args_is_help=True)


def apply_setup(
    deploy_dir: Path,
    deployments_file: str,
    env: Mapping[str, str],
    api_url: str,
    *,
    after_pools: Callable[[], None] | None = None,
) -> bool:
    """Validate then apply; print one line per object and a summary. False on invalid files."""
    import asyncio
    import os

    from deploy_tools.setup import SetupFilesError, apply_plan, load_plan

    try:
        plan = load_plan(deploy_dir, deployments_file, {**os.environ, **env})
    except SetupFilesError as exc:
        err_console.print("[red]invalid setup files, nothing was applied:[/red]")
        for problem in exc.problems:
            err_console.print(f"  {problem}", markup=False)
        return False
    try:
        with api(api_url):
            changes = asyncio.run(apply_plan(plan, after_pools=after_pools))
    except Exception as exc:  # the server refused something: say what, without a traceback
        err_console.print(f"[red]setup apply failed:[/red] {type(exc).__name__}: {exc}")
        err_console.print("objects listed before this line may already be applied; fix and rerun")
        return False
    for c in changes:
        colour = {"created": "green", "updated": "yellow", "skipped": "dim"}.get(c.action, "")
        action = f"[{colour}]{c.action}[/{colour}]" if colour else c.action
        console.print(f"  {c.kind} {c.name}: {action}" + (f" ({c.detail})" if c.detail else ""))
    if all(c.action in ("unchanged", "skipped") for c in changes):
        console.print("setup: nothing changed")
    else:
        n = sum(c.action in ("created", "updated") for c in changes)
        console.print(f"setup: {n} of {len(changes)} objects created or updated")
    return True


@app.command()
def apply(
    *,
    file: str = typer.Option("prefect.local.yaml", help="Deployments file under deploy/."),
    api_url: str | None = typer.Option(
        None, help="Prefect API URL (default: the local stack's; env PREFECT_API_URL is not used)."
    ),
) -> None:
    """Validate every file under deploy/, then create or update what differs on the server."""
    from deploy_tools.stack import LocalStack

    proj = project()
    stack = LocalStack(proj)
    ports = stack.recorded_ports() or stack.ports()
    url = api_url or stack.api_url(ports)
    require_server(url)
    if not apply_setup(proj.deploy_dir, file, stack.setup_env(ports), url):
        raise fail("setup apply stopped")
