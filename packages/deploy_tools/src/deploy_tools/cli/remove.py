"""`airnub remove project <name>`: undo `new project` (and, on request, clean the server)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from deploy_tools.cli.terminal import terminal

if TYPE_CHECKING:
    from deploy_tools.scaffold.cleanup import ServerObjects
    from deploy_tools.settings import AirnubSettings

app = typer.Typer(no_args_is_help=True)


@app.command()
def project(
    name: str = typer.Argument(..., help="The project's name, e.g. beta."),
    *,
    yes: bool = typer.Option(
        False, "--yes", help="Also delete its deployments and variables from the running stack."
    ),
    lock: bool = typer.Option(True, help="Run `uv lock` to drop the package from uv.lock."),
) -> None:
    """Delete packages/<its package>/ and deploy/projects/<name>/, then `uv lock`.

    When the local stack runs, its deployments and variables there are offered for deletion
    (asked on a terminal; `--yes` deletes them without asking).
    """
    from deploy_tools.scaffold.cleanup import delete_objects, project_objects
    from deploy_tools.scaffold.create import ScaffoldError, find_project, remove_project

    config = terminal.settings()
    root = config.project_dir
    try:
        target = find_project(root, name)
    except ScaffoldError as exc:
        raise terminal.fail(f"{exc} (nothing was removed)") from None
    on_server = _on_running_stack(config, project_objects(target))
    try:
        removed = remove_project(root, name, lock=lock)
    except ScaffoldError as exc:
        raise terminal.fail(f"{exc} (nothing was removed)") from None
    for path in removed:
        terminal.console.print(f"  removed {path}/", markup=False)
    if lock:
        terminal.console.print("  updated uv.lock", markup=False)
    if on_server is not None:
        api_url, objects = on_server
        shown = ", ".join(objects.deployments + objects.variables)
        if yes or (
            sys.stdin.isatty() and typer.confirm(f"Delete {shown} from {api_url}?", default=False)
        ):
            delete_objects(api_url, objects)
            terminal.console.print(f"  deleted from {api_url}: {shown}", markup=False)
        else:
            terminal.note(
                f"left on {api_url}: {shown} (`airnub remove project {name} --yes` before "
                "removing deletes them; or delete them in the UI)"
            )
    terminal.console.print(f"\nProject {name!r} removed.", markup=False)


def _on_running_stack(
    config: AirnubSettings, objects: ServerObjects
) -> tuple[str, ServerObjects] | None:
    """(API URL, the objects it holds) when the local stack answers and holds some."""
    from deploy_tools.local.stack.mode import running_stack
    from deploy_tools.prefect_api import server_answers
    from deploy_tools.scaffold.cleanup import existing_objects

    if not objects:
        return None
    try:
        stack = running_stack(config)
    except Exception:  # no stack was ever started here
        return None
    if not server_answers(stack.api_url, timeout=1.0):
        return None
    found = existing_objects(stack.api_url, objects)
    return (stack.api_url, found) if found else None
