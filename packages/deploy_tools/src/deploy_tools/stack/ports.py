"""Loopback port checks."""

from __future__ import annotations

import socket

from deploy_tools.stack.interface import StackError

HOST = "127.0.0.1"


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
