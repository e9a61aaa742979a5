"""One logging setup: structlog, readable on a terminal, JSON otherwise, bridged into Prefect.

Events are rendered to stderr, unless a run-log bridge in `RUN_BRIDGES` takes them over:
`pipeline_core.integrations.prefect` adds one when imported, which hands each event logged
inside a Prefect flow or task run to that run's Prefect logger (stored as the run's log in
the API, printed once on the console) and drops it here, so nothing is printed twice.

Example:
    >>> from pipeline_core.logging import configure_logging, get_logger
    >>> configure_logging()
    >>> get_logger("pipeline_core.demo").info("rows parsed", source="cities", rows=10)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from pipeline_core.urls import redact_urls_in

_configured = False

RUN_BRIDGES: list[Callable[[WrappedLogger, str, EventDict], EventDict]] = []
"""structlog processors that may take an event over for an orchestrator's run log: each
returns the event (not taken) or raises `structlog.DropEvent`. Read at each event."""

# structlog method names -> stdlib levels.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

# Keys Prefect records itself (level, time, logger name) or that are passed separately.
_NOT_IN_MESSAGE = {"event", "level", "timestamp", "logger", "exc_info", "stack_info"}


class _Stderr:
    """`sys.stderr` looked up at each write, so redirections (pytest, daemons) are honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class _NamedWriteLogger(structlog.WriteLogger):
    """A `WriteLogger` that knows its name, for `structlog.stdlib.add_logger_name`."""

    def __init__(self, name: str, file: Any) -> None:
        super().__init__(file=file)
        self.name = name


def _format_value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # circular structures
        return repr(value)


def format_message(event_dict: EventDict) -> str:
    """One readable line for Prefect's UI: the event, then `key=value` pairs.

    Example:
        >>> format_message({"event": "parsed", "source": "cities", "rows": 10, "level": "info"})
        'parsed source=cities rows=10'
    """
    parts = [str(event_dict.get("event", ""))]
    parts += [f"{k}={_format_value(v)}" for k, v in event_dict.items() if k not in _NOT_IN_MESSAGE]
    return " ".join(p for p in parts if p)


def redact_urls(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: every URL in a text value goes through `redact_url`, so no log
    line (terminal or Prefect API) shows user info or a token of a URL.

    Example:
        >>> redact_urls(None, "info", {"event": "got", "url": "https://u:p@h/a?token=t"})
        {'event': 'got', 'url': 'https://h/a?token=REDACTED'}
    """
    return {k: redact_urls_in(v) if isinstance(v, str) else v for k, v in event_dict.items()}


def _run_bridges(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    for bridge in RUN_BRIDGES:
        event_dict = bridge(logger, method_name, event_dict)
    return event_dict


def configure_logging(
    level: int | str = logging.INFO,
    *,
    json_output: bool | None = None,
    stream: IO[str] | None = None,
    force: bool = False,
) -> None:
    """Configure structlog once; later calls are no-ops unless `force`.

    Args:
        level: lowest level emitted (e.g. `"DEBUG"`).
        json_output: JSON lines; default: JSON unless `stream` is a terminal.
        stream: where events outside a Prefect run go; default `sys.stderr`.
        force: reconfigure even if already configured (tests).
    """
    global _configured
    if _configured and not force:
        return
    out: IO[str] | _Stderr = stream if stream is not None else _Stderr()
    tty = hasattr(out, "isatty") and out.isatty()
    if json_output is None:
        json_output = not tty
    # Tracebacks never show local variables: they may hold secrets.
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.plain_traceback
        )
    )
    numeric_level = (
        level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            redact_urls,
            _run_bridges,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *(
                [
                    structlog.processors.ExceptionRenderer(
                        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                    )
                ]
                if json_output
                else []
            ),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=lambda *args: _NamedWriteLogger(str(args[0]) if args else "", out),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str, **initial: Any) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger carrying `logger=<name>`; configures logging if not done yet.

    The logger is a lazy proxy: it follows a later `configure_logging(force=True)`.

    Example:
        >>> log = get_logger("pipeline_core.processing")  # doctest: +SKIP
        >>> log.info("source processed", source="cities", rows_out=7)  # doctest: +SKIP
    """
    configure_logging()
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name, **initial)
    return logger
