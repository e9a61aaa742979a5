"""structlog setup: rendering, idempotence, and lines stored as Prefect run logs (via the API)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from pipeline_core.logging import configure_logging, format_message, get_logger


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Route structlog to a buffer for one test, then restore the default setup."""
    buf = io.StringIO()
    configure_logging(stream=buf, force=True)
    yield buf
    configure_logging(force=True)


def test_json_when_not_a_terminal(stream: io.StringIO) -> None:
    get_logger("t.json").info("rows parsed", source="cities", rows=10)
    record = json.loads(stream.getvalue())
    assert record["event"] == "rows parsed"
    assert record["source"] == "cities"
    assert record["rows"] == 10
    assert record["level"] == "info"
    assert record["logger"] == "t.json"
    assert record["timestamp"].endswith("Z")


def test_urls_in_log_values_are_redacted(stream: io.StringIO) -> None:
    get_logger("t.redact").warning(
        "source failed",
        error="HTTP 401 from https://me:pw-123@h/a.csv?token=t-456&page=2",
        url="https://h/b.csv?X-Amz-Signature=s-789",
        rows=3,
    )
    record = json.loads(stream.getvalue())
    assert record["error"] == "HTTP 401 from https://h/a.csv?token=REDACTED&page=2"
    assert record["url"] == "https://h/b.csv?X-Amz-Signature=REDACTED"
    assert record["rows"] == 3
    for secret in ("pw-123", "t-456", "s-789"):
        assert secret not in stream.getvalue()


def test_readable_console_on_a_terminal() -> None:
    tty = _TTY()
    configure_logging(stream=tty, force=True)
    try:
        get_logger("t.tty").warning("slow source", source="cities")
    finally:
        configure_logging(force=True)
    line = re.sub(r"\x1b\[[0-9;]*m", "", tty.getvalue())  # drop colour codes
    assert "slow source" in line
    assert "source=" in line
    assert "[warning" in line
    assert "[t.tty]" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_configure_is_idempotent(stream: io.StringIO) -> None:
    other = io.StringIO()
    configure_logging(stream=other)  # already configured: ignored
    get_logger("t.idem").info("once")
    assert other.getvalue() == ""
    assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == ["once"]


def test_level_filter_and_exceptions(stream: io.StringIO) -> None:
    configure_logging(stream=stream, level="WARNING", force=True)
    log = get_logger("t.level")
    log.info("hidden")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("failed", source="x")
    records = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["failed"]
    assert records[0]["exception"][0]["exc_type"] == "ValueError"
    assert "locals" not in records[0]["exception"][0]["frames"][0]  # never leak locals


def test_logger_created_before_reconfigure_follows_it() -> None:
    log = get_logger("t.lazy")
    buf = io.StringIO()
    configure_logging(stream=buf, force=True)
    try:
        log.info("late")
    finally:
        configure_logging(force=True)
    assert json.loads(buf.getvalue())["event"] == "late"


def test_format_message_for_prefect() -> None:
    msg = format_message(
        {"event": "done", "source": "a b", "rows": 3, "logger": "x", "level": "info", "ok": True}
    )
    assert msg == 'done source="a b" rows=3 ok=true'


def test_import_does_not_import_prefect() -> None:
    code = "import sys, pipeline_core.logging as m; m.get_logger('x').info('hi'); print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert json.loads(out.stderr)["event"] == "hi"


async def test_lines_logged_in_runs_are_stored_as_prefect_logs(
    stream: io.StringIO, run_logs: Any
) -> None:
    from prefect import flow, task
    from prefect.runtime import flow_run

    import pipeline_core.integrations.prefect  # noqa: F401  (adds the run-log bridge)

    marker = uuid4().hex
    log = get_logger("t.bridge")

    @task
    async def step() -> None:
        log.warning("task line", marker=marker)

    @flow
    async def logged() -> str:
        log.info("flow line", marker=marker, rows=3)
        await step()
        return str(flow_run.id)

    flow_run_id = UUID(await logged())
    log.info("outside any run", marker=marker)

    logs = await run_logs(flow_run_id, "marker=", 2)
    ours = [entry for entry in logs if f"marker={marker}" in entry.message]  # type: ignore[attr-defined]
    assert len(ours) == 2, [e.message for e in ours]  # type: ignore[attr-defined]
    flow_entry = next(e for e in ours if e.message.startswith("flow line"))  # type: ignore[attr-defined]
    task_entry = next(e for e in ours if e.message.startswith("task line"))  # type: ignore[attr-defined]
    assert flow_entry.level == logging.INFO
    assert "rows=3" in flow_entry.message
    assert flow_entry.task_run_id is None
    assert task_entry.level == logging.WARNING
    assert task_entry.task_run_id is not None
    # In a run, the line went to Prefect only (its console handler prints it once);
    # outside a run, our renderer wrote it.
    printed = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [p["event"] for p in printed] == ["outside any run"]
