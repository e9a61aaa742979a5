"""`airnub setup apply`: work pools, variables, blocks and deployments from deploy/."""

from __future__ import annotations

from pathlib import Path

import typer

from deploy_tools.cli.terminal import terminal

app = typer.Typer(no_args_is_help=True)


@app.command()
def apply(
    *,
    file: list[str] = typer.Option(  # noqa: B008
        [],
        help="Another deployments file under deploy/ to apply too (repeatable; every project's "
        "own files are always applied).",
    ),
    api_url: str | None = typer.Option(
        None, help="Prefect API URL (default: the local stack's; env PREFECT_API_URL is not used)."
    ),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="After the apply, delete the deployments, variables and blocks airnub made that no "
        "file holds any more (a deployment's scheduled runs go with it).",
    ),
    yes: bool = typer.Option(
        False, "--yes", help="Prune even more than 5 objects or half of what airnub manages."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate and list what --prune would delete; write nothing."
    ),
) -> None:
    """Validate every file under deploy/, then create or update what differs on the server."""
    from deploy_tools.local.service import apply_setup
    from deploy_tools.local.stack import running_stack
    from deploy_tools.prefect_api import server_answers

    config = terminal.settings()
    stack = running_stack(config)  # the mode the last `up` used
    url = api_url or stack.api_url
    if not server_answers(url):
        raise terminal.fail(f"no Prefect server answers at {url}; start it with `airnub stack up`")
    extra = [config.deploy_dir / Path(f) for f in file]
    with terminal.steps() as reporter:
        apply_setup(config, stack, reporter, extra_deployments=extra, api_url=url, prune=prune,
                    yes=yes, dry_run=dry_run)  # fmt: skip
