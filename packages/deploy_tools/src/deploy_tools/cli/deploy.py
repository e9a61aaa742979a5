"""`airnub deploy local|remote`: one-command deploys (the use cases: `deploy_tools.local`,
`deploy_tools.remote`)."""

from __future__ import annotations

from pathlib import Path

import typer

from deploy_tools.cli.stack import NoWait
from deploy_tools.cli.terminal import terminal
from deploy_tools.local.stack.mode import Mode

app = typer.Typer(no_args_is_help=True)


@app.command()
def local(
    *,
    mode: Mode = typer.Option(  # noqa: B008
        Mode.auto,
        help="process (local processes, SQLite), compose (containers, PostgreSQL), or auto: "
        "compose when a Docker engine answers.",
    ),
    server_port: int | None = typer.Option(
        None, help="Prefect server port (env AIRNUB_SERVER_PORT)."
    ),
    data_port: int | None = typer.Option(None, help="Demo-data port (env AIRNUB_DATA_PORT)."),
    demo: bool = typer.Option(True, help="Run every project's demo deployment at the end."),
    timeout: float = typer.Option(600, help="Seconds to wait for each demo run."),
    build: bool = typer.Option(
        False, "--build", help="compose: rebuild the worker image even when it looks up to date."
    ),
    no_wait: bool = NoWait,
) -> None:
    """Import gate, stack up, setup apply, demo runs; then print the UI URL and the outputs.

    compose mode: PostgreSQL, the server, the worker and the demo-data server in containers
    (deploy/compose.yaml); the worker image is built when missing or out of date.
    """
    from deploy_tools.local.service import deploy_local
    from deploy_tools.local.stack import open_stack

    config = terminal.settings()
    stack = open_stack(
        mode, config, server_port=server_port, data_port=data_port, build=build, note=terminal.note
    )
    with terminal.steps() as reporter:
        result = deploy_local(config, stack, reporter, demo=demo, timeout=timeout, wait=not no_wait)
    console = terminal.console
    width = max((len(name) for name in result.outputs), default=2) + len("Outputs ")
    console.print(f"\n[bold]{'Prefect UI':<{width}}[/bold]  {result.ui_url}")
    for name, folder in result.outputs.items():
        console.print(f"[bold]{'Outputs ' + name:<{width}}[/bold]  {folder}", soft_wrap=True)
    console.print("Stop with `hatch run deploy:down`; status with `hatch run deploy:status`.")


@app.command()
def remote(
    *,
    api_url: str | None = typer.Option(
        None,
        "--api-url",
        envvar="PREFECT_API_URL",
        help="The remote Prefect API (env PREFECT_API_URL).",
    ),
    registry: str | None = typer.Option(
        None, "--registry", envvar="AIRNUB_REGISTRY", help="host[:port]\\[/path] to push to."
    ),
    image: str | None = typer.Option(
        None, "--image", help="Local image name:tag (default: image of [tool.airnub])."
    ),
    prefect_file: str = typer.Option(
        "prefect.yaml",
        "--prefect-file",
        help="Each project's deployments file in deploy/projects/<name>/ (prefect.yaml: the "
        "Docker pool; prefect.k8s.yaml: Kubernetes).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; touch nothing."),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="After the deploy, delete the deployments, variables and blocks airnub deployed "
        "that no remote file holds any more (a deployment's scheduled runs go with it).",
    ),
    yes: bool = typer.Option(
        False, "--yes", help="Prune even more than 5 objects or half of what airnub manages."
    ),
) -> None:
    """Build and push the worker image, apply pools, variables and blocks, deploy prefect.yaml.

    Credentials come from the environment only: PREFECT_API_KEY (Prefect Cloud) or
    PREFECT_API_AUTH_STRING (a self-hosted server with basic auth); never printed or stored.
    """
    from deploy_tools.remote.service import RemoteTarget, deploy_remote

    config = terminal.settings()
    if not api_url:
        raise terminal.fail("PREFECT_API_URL is not set: the remote Prefect API, e.g. "
                   "https://prefect.example.com/api (or pass --api-url)", code=2)  # fmt: skip
    if not registry and not dry_run:
        raise terminal.fail("AIRNUB_REGISTRY is not set: the registry to push the image to, e.g. "
                   "registry.example.com:5000/team (or pass --registry)", code=2)  # fmt: skip
    target = RemoteTarget(
        api_url.rstrip("/"),
        (registry or "").rstrip("/"),
        image or config.image,
        Path(prefect_file).name,
    )
    with terminal.steps() as reporter:
        result = deploy_remote(config, reporter, target, dry_run=dry_run, prune=prune, yes=yes)
    console = terminal.console
    if dry_run:
        console.print("dry run: nothing was built, pushed or applied")
        return
    console.print(f"\n[bold]Image[/bold]        {result.image_ref}")
    for name in result.deployments:
        console.print(f"[bold]Deployment[/bold]   {name}", markup=True)
    if result.workers:
        console.print()
    for line in result.workers:  # exact commands: never wrapped, no markup
        console.print(line, markup=False, highlight=False, soft_wrap=True)
