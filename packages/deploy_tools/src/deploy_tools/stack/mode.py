"""Which `Stack` runs: `--mode process|compose|auto`."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy_tools.settings import AirnubSettings
    from deploy_tools.stack.interface import Stack

COMPOSE_AVAILABLE = False  # the compose mode is a later issue


class Mode(enum.StrEnum):
    """How the local stack runs."""

    auto = "auto"
    process = "process"
    compose = "compose"


class ModeNotAvailableError(RuntimeError):
    """The chosen mode is not implemented (yet)."""


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
    """`auto`: compose when a Docker engine answers (and compose mode exists), else process.

    `note` receives a line worth telling the user (an engine answered but compose is missing).
    """
    if mode is not Mode.auto:
        return mode
    if docker_answers(settings.docker_host):
        if COMPOSE_AVAILABLE:
            return Mode.compose
        if note:
            note(
                "Docker engine found, but the compose mode is not implemented yet: using process mode"
            )
    return Mode.process


def open_stack(
    mode: Mode,
    settings: AirnubSettings,
    *,
    server_port: int | None = None,
    data_port: int | None = None,
) -> Stack:
    """The stack of `mode` (already resolved), on the chosen ports.

    Raises:
        ModeNotAvailableError: compose mode, for now.
    """
    from deploy_tools.stack.process import ProcessStack

    if mode is Mode.compose:
        raise ModeNotAvailableError("the compose mode is not implemented yet — use --mode process")
    if mode is Mode.auto:
        raise ValueError("resolve the mode first (resolve_mode)")
    probe = ProcessStack(settings)
    return ProcessStack(settings, probe.wanted_ports(server_port, data_port))
