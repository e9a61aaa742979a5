"""`airnub deploy local|remote`: one-command deploys."""

from __future__ import annotations

import enum

import typer

from deploy_tools.cli._common import console, fail, project

app = typer.Typer(no_args_is_help=True)

COMPOSE_AVAILABLE = False  # the compose mode is a later issue


class Mode(enum.StrEnum):
    """How the local stack runs."""

    auto = "auto"
    process = "process"
    compose = "compose"


def docker_answers(timeout: float = 1.0) -> bool:
    """True when a Docker engine answers `/_ping` on DOCKER_HOST or the default socket."""
    import os

    import httpx

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=host.removeprefix("unix://"))
            with httpx.Client(transport=transport, timeout=timeout) as client:
                return client.get("http://docker/_ping").status_code == 200
        url = host.replace("tcp://", "http://", 1)
        return httpx.get(f"{url}/_ping", timeout=timeout).status_code == 200
    except (httpx.HTTPError, OSError):
        return False


def resolve_mode(mode: Mode) -> Mode:
    """`auto`: compose when a Docker engine answers (and compose mode exists), else process."""
    if mode is not Mode.auto:
        return mode
    if docker_answers():
        if COMPOSE_AVAILABLE:
            return Mode.compose
        console.print(
            "Docker engine found, but the compose mode is not implemented yet: using process mode"
        )
    return Mode.process


@app.command()
def local(
    *,
    mode: Mode = typer.Option(Mode.auto, help="process (no Docker), compose, or auto."),  # noqa: B008
    server_port: int | None = typer.Option(
        None, help="Prefect server port (env AIRNUB_SERVER_PORT)."
    ),
    data_port: int | None = typer.Option(None, help="Demo-data port (env AIRNUB_DATA_PORT)."),
    demo: bool = typer.Option(True, help="Run the demo pipeline at the end."),
    timeout: float = typer.Option(600, help="Seconds to wait for the demo run."),
) -> None:
    """Import gate, stack up, setup apply, demo run; then print the UI URL and the outputs folder."""
    from deploy_tools.cli.check import run_entrypoint_gate
    from deploy_tools.cli.demo import run_demo
    from deploy_tools.cli.setup import apply_setup
    from deploy_tools.project import LOCAL_DEPLOY_FILE
    from deploy_tools.stack import LocalStack, PortInUseError, StackError

    proj = project()
    if resolve_mode(mode) is Mode.compose:
        raise fail("the compose mode is not implemented yet — use --mode process", code=2)
    if not run_entrypoint_gate([proj.deploy_dir / LOCAL_DEPLOY_FILE]):
        raise fail("fix the entrypoints above before deploying")

    stack = LocalStack(proj)
    ports = stack.ports(server_port, data_port)
    try:
        with console.status("starting the local stack (server, demo-data)"):
            stack.up(ports, worker=False)
    except (PortInUseError, StackError) as exc:
        raise fail(str(exc)) from None
    # The worker starts once its pool exists as the files describe it; its start-up (~5 s)
    # overlaps the rest of the apply.
    if not apply_setup(
        proj.deploy_dir,
        LOCAL_DEPLOY_FILE,
        stack.setup_env(ports),
        stack.api_url(ports),
        after_pools=lambda: stack.start_worker(ports),
    ):
        raise fail("setup apply stopped; the stack is up (`airnub stack down` stops it)")
    if demo and not run_demo(
        stack.api_url(ports), stack.ui_url(ports), "alpha_pipeline/local", timeout
    ):
        raise fail(f"the demo run did not complete; worker log: {stack.worker.log_file}")
    console.print(f"\n[bold]Prefect UI[/bold]  {stack.ui_url(ports)}")
    console.print(f"[bold]Outputs[/bold]     {proj.data_root}")
    console.print("Stop with `hatch run deploy:down`; status with `hatch run deploy:status`.")


@app.command()
def remote() -> None:
    """Deploy to a remote Prefect server (not implemented yet)."""
    raise fail("`deploy remote` is not implemented yet; see deploy/prefect.yaml", code=2)
