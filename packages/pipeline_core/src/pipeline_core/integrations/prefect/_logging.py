"""The structlog -> Prefect run-log bridge, added to `pipeline_core.logging.RUN_BRIDGES`."""

from __future__ import annotations

import logging

import structlog
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger
from structlog.typing import EventDict, WrappedLogger

from pipeline_core.logging import LEVELS, RUN_BRIDGES, format_message


def forward_to_prefect_run(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """structlog processor: inside a flow/task run, log the event to the run's Prefect logger.

    The event is then dropped (`structlog.DropEvent`) so the terminal shows it once, through
    Prefect's console handler. Outside a run the event passes through unchanged.
    """
    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return event_dict
    level = LEVELS.get(method_name, logging.INFO)
    exc_info = event_dict.get("exc_info")
    if method_name == "exception" and exc_info is None:
        exc_info = True
    get_run_logger().log(level, format_message(event_dict), exc_info=exc_info or None)
    raise structlog.DropEvent


RUN_BRIDGES.append(forward_to_prefect_run)
