"""The one place for Prefect server, worker and client settings of airnub stacks.

Every way of running the stack (the embedded process stack now, compose later) takes its
environment from these functions, so a setting is changed here and nowhere else.

Telemetry is off by default (`DO_NOT_TRACK=1`, `PREFECT_SERVER_ANALYTICS_ENABLED=false`).
To opt in, set `AIRNUB_TELEMETRY=1` (`telemetry` of `AirnubSettings`) before starting the stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# Prefect 3.9's defaults (1 and 1) make the server drop task-run records under bursts of
# task runs ("Subscription queue is full, dropping message"): a Completed flow can show 590
# of its 1000 task runs. Batches of 100 removed the drops in a 4 x 1000-task test.
TASK_RUN_RECORDER_BATCH_SIZE = 100
TASK_RUN_RECORDER_READ_BATCH_SIZE = 100

# Workers poll every second instead of every 10 s: a run starts ~5 s sooner.
WORKER_QUERY_SECONDS = 1
WORKER_PREFETCH_SECONDS = 10


def telemetry_env(telemetry: bool = False) -> dict[str, str]:
    """Telemetry switches: off unless the user opted in (`AIRNUB_TELEMETRY=1`)."""
    if telemetry:
        return {}
    return {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def server_env(
    *, host: str, port: int, database_url: str, telemetry: bool = False
) -> dict[str, str]:
    """Environment for `prefect server start`, wherever the server runs.

    Example:
        >>> server_env(host="127.0.0.1", port=4200, database_url="sqlite+aiosqlite:///x.db")[
        ...     "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"]
        '100'
    """
    return {
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": str(TASK_RUN_RECORDER_BATCH_SIZE),
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": str(
            TASK_RUN_RECORDER_READ_BATCH_SIZE
        ),
        **telemetry_env(telemetry),
    }


def client_env(*, api_url: str, telemetry: bool = False) -> dict[str, str]:
    """Environment for anything that talks to the server (CLI, worker, flow runs)."""
    return {"PREFECT_API_URL": api_url, **telemetry_env(telemetry)}


def worker_env(
    *, api_url: str, data_roots: Mapping[str, Path], telemetry: bool = False
) -> dict[str, str]:
    """Environment for the worker; its flow runs inherit it (no secrets here, ever).

    `data_roots` maps each project's data-root variable (`ALPHA_DATA_ROOT`) to its folder: one
    worker serves every project.
    """
    return {
        **client_env(api_url=api_url, telemetry=telemetry),
        "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_SECONDS),
        "PREFECT_WORKER_PREFETCH_SECONDS": str(WORKER_PREFETCH_SECONDS),
        **{name: str(path) for name, path in data_roots.items()},
    }


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of the server's SQLite database at `path`."""
    return f"sqlite+aiosqlite:///{path}"
