"""What the CLI shows on the terminal: consoles, the error exit, the rich `Reporter`, and the
settings lookup that exits with a message instead of a traceback."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status

if TYPE_CHECKING:
    from deploy_tools.settings import AirnubSettings

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` in red on stderr and return an Exit to raise."""
    sys.stdout.flush()  # keep the order of stdout and stderr lines
    err_console.print(f"[red]error:[/red] {escape(message)}")  # `[tool.airnub]` is no markup
    return typer.Exit(code)


def note(line: str) -> None:
    """One plain line (no markup) on stdout: what the stack code tells along the way."""
    console.print(line, markup=False)


def settings() -> AirnubSettings:
    """The settings of the current project folder, or exit with a clear message."""
    from pydantic import ValidationError

    from deploy_tools.settings import ProjectFileError, ProjectNotFoundError, load_settings

    try:
        return load_settings()
    except (ProjectNotFoundError, ProjectFileError) as exc:
        raise fail(str(exc)) from None
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise fail("invalid [tool.airnub] settings:\n" + "\n".join(lines)) from None


class RichReporter:
    """The service `Reporter` of the CLI: a spinner while a step runs, one line when it ends."""

    def __init__(self) -> None:
        self._status: Status | None = None

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def step_started(self, step: str, detail: str = "") -> None:
        self._stop()
        self._status = console.status(f"{step}: {detail}" if detail else step)
        self._status.start()

    def progress(self, step: str, detail: str) -> None:
        if self._status is not None:
            self._status.update(f"{step}: {detail}")

    def step_finished(self, step: str, detail: str = "", *, ok: bool = True) -> None:
        self._stop()
        text = f"{step}: {detail}" if detail else step
        if ok:
            console.print(text, markup=False)
        else:
            sys.stdout.flush()
            err_console.print(text, style="red", markup=False)

    def info(self, message: str) -> None:
        self._stop()
        console.print(message, markup=False)

    def failure(self, message: str) -> None:
        self._stop()
        sys.stdout.flush()
        err_console.print(message, markup=False)

    def close(self) -> None:
        """Stop the spinner (after an error)."""
        self._stop()
