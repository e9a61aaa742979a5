"""Loopback ports: which ones the stack uses (and which mode ran it last), and port checks."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploy_tools.local.stack.interface import StackError

if TYPE_CHECKING:
    from deploy_tools.settings import AirnubSettings

HOST = "127.0.0.1"
# under .local/: {"mode", "server_port", "data_port", "database": {"bytes", "deployments"}}
STACK_FILE = "stack.json"


@dataclass(frozen=True)
class Ports:
    """The loopback ports of the stack."""

    server: int
    data: int


class LoopbackUrls:
    """`api_url` and `ui_url` of a stack whose server is published on 127.0.0.1:`ports.server`."""

    ports: Ports

    @property
    def api_url(self) -> str:
        """The server's API URL, as this machine reaches it."""
        return f"http://{HOST}:{self.ports.server}/api"

    @property
    def ui_url(self) -> str:
        """The Prefect UI, as this machine's browser reaches it."""
        return f"http://{HOST}:{self.ports.server}"


def _recorded(settings: AirnubSettings) -> dict[str, object]:
    try:
        raw = json.loads((settings.local_dir / STACK_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def recorded_ports(settings: AirnubSettings) -> Ports | None:
    """The ports of the last `up`, if any."""
    raw = _recorded(settings)
    try:
        return Ports(int(raw["server_port"]), int(raw["data_port"]))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        return None


def recorded_mode(settings: AirnubSettings) -> str:
    """The mode of the last `up` (`process` when none is recorded)."""
    return str(_recorded(settings).get("mode", "process"))


def _write(settings: AirnubSettings, updates: dict[str, object]) -> None:
    settings.local_dir.mkdir(parents=True, exist_ok=True)
    (settings.local_dir / STACK_FILE).write_text(json.dumps({**_recorded(settings), **updates}))


def record_stack(settings: AirnubSettings, ports: Ports, *, mode: str) -> None:
    """Remember the ports and mode of this `up` for later commands (other keys are kept)."""
    _write(settings, {"mode": mode, "server_port": ports.server, "data_port": ports.data})


def record_database(settings: AirnubSettings, size: int, deployments: int | None) -> None:
    """Remember what the server's database held at this `up`/`down` (`database` in the file)."""
    _write(settings, {"database": {"bytes": size, "deployments": deployments}})


def recorded_database(settings: AirnubSettings) -> tuple[int, int | None] | None:
    """`(bytes, deployments)` of the server's database at the last `up`/`down`, if recorded."""
    raw = _recorded(settings).get("database")
    if not isinstance(raw, dict):
        return None
    size, count = raw.get("bytes"), raw.get("deployments")
    if not isinstance(size, int) or not (count is None or isinstance(count, int)):
        return None
    return size, count


def choose_ports(
    settings: AirnubSettings, server: int | None = None, data: int | None = None
) -> Ports:
    """Arguments, then AIRNUB_SERVER_PORT / AIRNUB_DATA_PORT or [tool.airnub], then the last
    used, then the defaults."""
    last = recorded_ports(settings)

    def pick(arg: int | None, key: str, recorded: int | None) -> int:
        if arg:
            return arg
        if key in settings.model_fields_set or recorded is None:
            return int(getattr(settings, key))
        return recorded

    return Ports(
        pick(server, "server_port", last.server if last else None),
        pick(data, "data_port", last.data if last else None),
    )


class PortInUseError(StackError):
    """A port the stack needs is taken by another program."""


def ensure_free(port: int, *, what: str, hint: str) -> None:
    """Raise `PortInUseError` naming `what` and `hint` when 127.0.0.1:`port` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on {HOST} is taken by another program, so the {what} cannot "
                f"start ({exc.strerror}); {hint}"
            ) from exc
