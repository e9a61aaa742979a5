"""`Stack`: what the deploy service needs of a running Prefect stack, whatever runs it.

`ProcessStack` (local processes) and `ComposeStack` (the containers of deploy/compose.yaml) are
the implementations; the deploy service uses either through this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from deploy_tools.settings import ProjectSettings

PARTS = ("server", "worker", "demo-data")


class StackError(RuntimeError):
    """The stack cannot start or is not running; the message says where to look."""


@dataclass(frozen=True)
class PartStatus:
    """Health of one part of the stack; `log` says where its log is (a file, a command)."""

    name: str
    pid: int | None
    healthy: bool
    detail: str
    log: str


@dataclass(frozen=True)
class PartLog:
    """The end of one part's log; `lines` is None when it has no log yet."""

    name: str
    location: str
    lines: list[str] | None


class Stack(Protocol):
    """A Prefect server, the one local worker (every project's pool) and the demo-data server."""

    worker_sweeps: bool
    """True when the worker's start removes the temp files runs left (a dead worker's runs)."""

    @property
    def api_url(self) -> str:
        """The server's API URL, reachable from this machine."""
        ...

    @property
    def ui_url(self) -> str:
        """The Prefect UI."""
        ...

    def up(self, *, worker: bool = True) -> None:
        """Start whatever part is not running and wait until healthy.

        Raises:
            StackError: a part cannot start (a taken port, a crash); the message says why.
        """
        ...

    def apply_env(self, project: ProjectSettings | None = None) -> dict[str, str]:
        """`{{ $STACK_* }}` values for the setup files: shared ones, plus `project`'s own when
        given (`deploy_tools.setup.values`)."""
        ...

    def start_worker(self) -> None:
        """Start the worker unless it runs (called once its work pool exists)."""
        ...

    def stop_worker(self) -> bool:
        """Stop the worker (and the flow runs it started); True if it was running."""
        ...

    def down(self, *, volumes: bool = False) -> list[str]:
        """Stop every part that runs; return the names stopped.

        `volumes`: also drop the server's data (database, volumes): the only way to lose it.
        """
        ...

    def status(self) -> list[PartStatus]:
        """Health of each part."""
        ...

    def logs(self, part: str = "all", lines: int = 40) -> list[PartLog]:
        """The end of `part`'s log (or every part's).

        Raises:
            ValueError: an unknown part, naming the known ones.
        """
        ...
