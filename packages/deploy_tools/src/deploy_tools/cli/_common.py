"""Shared bits of the CLI groups: console, project lookup, talking to the local stack."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from deploy_tools.project import Project

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` in red on stderr and return an Exit to raise."""
    sys.stdout.flush()  # keep the order of stdout and stderr lines
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def project() -> Project:
    """The current project, or exit with a clear message."""
    from deploy_tools.project import Project, ProjectNotFoundError

    try:
        return Project.find()
    except ProjectNotFoundError as exc:
        raise fail(str(exc)) from None


@contextmanager
def api(url: str) -> Iterator[None]:
    """Point the Prefect client in this process at `url` (over any profile setting)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def require_server(api_url: str) -> None:
    """Exit with a clear message when no Prefect server answers at `api_url`."""
    import httpx

    try:
        ok = httpx.get(f"{api_url}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        ok = False
    if not ok:
        raise fail(f"no Prefect server answers at {api_url}; start it with `airnub stack up`")
