"""Which `Stack`: `--mode process|compose|auto` for the commands that start one (`Mode`), and
`--mode running|process|compose` for those that look at the one that runs (`RunningMode`)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy_tools.local.stack.interface import Stack
    from deploy_tools.settings import AirnubSettings


class Mode(enum.StrEnum):
    """How to start the local stack: `auto` is compose when a Docker engine answers."""

    auto = "auto"
    process = "process"
    compose = "compose"


class RunningMode(enum.StrEnum):
    """Which stack to look at or stop: `running` is the mode the last `up` used."""

    running = "running"
    process = "process"
    compose = "compose"


def docker_answers(docker_host: str, timeout: float = 1.0) -> bool:
    """True when a Docker engine answers `/_ping` at `docker_host` (`unix://…` or `tcp://…`)."""
    import httpx

    try:
        if docker_host.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=docker_host.removeprefix("unix://"))
            with httpx.Client(transport=transport, timeout=timeout) as client:
                return client.get("http://docker/_ping").status_code == 200
        url = docker_host.replace("tcp://", "http://", 1)
        return httpx.get(f"{url}/_ping", timeout=timeout).status_code == 200
    except (httpx.HTTPError, OSError):
        return False


def resolve_mode(
    mode: Mode, settings: AirnubSettings, note: Callable[[str], None] | None = None
) -> Mode:
    """`auto`: compose when a Docker engine answers, else process; `note` hears which and why."""
    if mode is not Mode.auto:
        return mode
    tell = note or (lambda _line: None)
    if docker_answers(settings.docker_host):
        tell(
            f"mode: compose (a Docker engine answers at {settings.docker_host}); "
            "`--mode process` runs the stack as local processes instead"
        )
        return Mode.compose
    tell(
        f"mode: process (no Docker engine answers at {settings.docker_host}); start one, or "
        "set DOCKER_HOST, and pass `--mode compose` for PostgreSQL and containers"
    )
    return Mode.process


def open_stack(
    mode: Mode,
    settings: AirnubSettings,
    *,
    server_port: int | None = None,
    data_port: int | None = None,
    build: bool = False,
    note: Callable[[str], None] | None = None,
) -> Stack:
    """The stack of `mode` (`auto`: `resolve_mode` picks one), on the chosen ports.

    `note` hears which mode `auto` picked; `build` and `note` concern the compose mode too:
    rebuild the worker image, progress lines.
    """
    from deploy_tools.local.stack.ports import choose_ports

    mode = resolve_mode(mode, settings, note)
    ports = choose_ports(settings, server_port, data_port)
    if mode is Mode.compose:
        from deploy_tools.local.stack.compose import ComposeStack

        return ComposeStack(settings, ports, build=build, note=note)
    from deploy_tools.local.stack.process import ProcessStack

    return ProcessStack(settings, ports, note=note)


def running_stack(
    settings: AirnubSettings,
    mode: RunningMode = RunningMode.running,
    note: Callable[[str], None] | None = None,
) -> Stack:
    """The stack that `up` started last (`running`), or the one of `mode`, on its recorded ports."""
    from deploy_tools.local.stack.ports import recorded_mode

    chosen = recorded_mode(settings) if mode is RunningMode.running else mode.value
    return open_stack(Mode(chosen), settings, note=note)
