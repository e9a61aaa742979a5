"""The one object that owns what the CLI shows (`terminal`, as Hatch's `Application`): the
consoles, the error exit, the settings lookup that exits with a message instead of a traceback,
and the rich `Reporter` the use cases report their steps to."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status

from deploy_tools.reporting import DeployError

if TYPE_CHECKING:
    from deploy_tools.settings import AirnubSettings


class Terminal:
    """Every command's output: `console` (stdout), `err` (stderr), `fail`, `note`, `steps`."""

    def __init__(self) -> None:
        self.console = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def fail(self, message: str, code: int = 1) -> typer.Exit:
        """Print `message` in red on stderr and return an Exit to raise."""
        sys.stdout.flush()  # keep the order of stdout and stderr lines
        self.err.print(f"[red]error:[/red] {escape(message)}")  # `[tool.airnub]` is no markup
        return typer.Exit(code)

    def note(self, line: str) -> None:
        """One plain line (no markup) on stdout: what the stack code tells along the way."""
        self.console.print(line, markup=False)

    def settings(self) -> AirnubSettings:
        """The settings of the current project folder, or exit with a clear message."""
        from pydantic import ValidationError

        from deploy_tools.settings import ProjectFileError, ProjectNotFoundError, load_settings

        try:
            config = load_settings()
        except (ProjectNotFoundError, ProjectFileError) as exc:
            raise self.fail(str(exc)) from None
        except ValidationError as exc:
            lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise self.fail("invalid [tool.airnub] settings:\n" + "\n".join(lines)) from None
        if not config.telemetry:  # airnub's own Prefect client reports nothing either
            os.environ.setdefault("DO_NOT_TRACK", "1")
        return config

    @contextmanager
    def steps(self) -> Iterator[RichReporter]:
        """A reporter for the block; a `DeployError` in it exits 1 with its one line."""
        reporter = RichReporter(self)
        try:
            yield reporter
        except DeployError as exc:
            raise self.fail(str(exc)) from None
        finally:
            reporter.close()


class RichReporter:
    """The use cases' `Reporter` on the terminal: a spinner while a step runs, one line when it
    ends."""

    def __init__(self, terminal: Terminal) -> None:
        self._terminal = terminal
        self._status: Status | None = None

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def step_started(self, step: str, detail: str = "") -> None:
        self._stop()
        self._status = self._terminal.console.status(f"{step}: {detail}" if detail else step)
        self._status.start()

    def progress(self, step: str, detail: str) -> None:
        if self._status is not None:
            self._status.update(f"{step}: {detail}")

    def step_finished(self, step: str, detail: str = "", *, ok: bool = True) -> None:
        self._stop()
        text = f"{step}: {detail}" if detail else step
        if ok:
            self._terminal.console.print(text, markup=False)
        else:
            sys.stdout.flush()
            self._terminal.err.print(text, style="red", markup=False)

    def info(self, message: str) -> None:
        self._stop()
        self._terminal.console.print(message, markup=False)

    def failure(self, message: str) -> None:
        self._stop()
        sys.stdout.flush()
        self._terminal.err.print(message, markup=False)

    def close(self) -> None:
        """Stop the spinner (after an error)."""
        self._stop()


terminal = Terminal()
