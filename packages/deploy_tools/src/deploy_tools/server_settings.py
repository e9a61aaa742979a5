"""The one place for Prefect server, worker and client settings of airnub stacks.

Both ways of running the stack take their environment from these functions (the process stack
directly, the compose stack through the env files it writes), so a setting is changed here and
nowhere else.

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


# PostgreSQL (compose mode). Prefect's defaults are a pool of 5 + 10 overflow per engine, a 30 s
# wait for a pooled connection, a 10 s statement timeout and a 5 s connect timeout. Prefect #22314
# saw "QueuePool limit ... timed out" and connect timeouts with 17 concurrent runs: every run's
# state changes, heartbeats and logs are API calls, each holding a connection. 20 + 20 serve 50
# concurrent runs here with room to spare (PostgreSQL gets max_connections=200 in compose.yaml);
# on 2 busy cores a connect or a statement can take seconds, hence 15 s and 30 s. Measured in
# tests/compose/test_compose_load.py (50 concurrent runs, 50 Completed).
POSTGRES_POOL_SIZE = 20
POSTGRES_MAX_OVERFLOW = 20
POSTGRES_POOL_TIMEOUT = 60
DATABASE_TIMEOUT = 30
DATABASE_CONNECTION_TIMEOUT = 15


def telemetry_env(telemetry: bool = False) -> dict[str, str]:
    """Telemetry switches: off unless the user opted in (`AIRNUB_TELEMETRY=1`)."""
    if telemetry:
        return {}
    return {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def server_env(
    *, host: str, port: int, database_url: str | None, telemetry: bool = False
) -> dict[str, str]:
    """Environment for `prefect server start`, wherever the server runs.

    `database_url` None: set elsewhere (compose.yaml builds it from the password in `.env`, so
    no file airnub writes holds it).

    Example:
        >>> server_env(host="127.0.0.1", port=4200, database_url="sqlite+aiosqlite:///x.db")[
        ...     "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"]
        '100'
    """
    db = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    return {
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        **db,
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": str(TASK_RUN_RECORDER_BATCH_SIZE),
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": str(
            TASK_RUN_RECORDER_READ_BATCH_SIZE
        ),
        **telemetry_env(telemetry),
    }


def postgres_env() -> dict[str, str]:
    """The server's database pool and timeouts for PostgreSQL (see the constants above)."""
    return {
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": str(POSTGRES_POOL_SIZE),
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": str(POSTGRES_MAX_OVERFLOW),
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT": str(POSTGRES_POOL_TIMEOUT),
        "PREFECT_SERVER_DATABASE_TIMEOUT": str(DATABASE_TIMEOUT),
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": str(DATABASE_CONNECTION_TIMEOUT),
    }


def client_env(*, api_url: str, telemetry: bool = False) -> dict[str, str]:
    """Environment for anything that talks to the server (CLI, worker, flow runs)."""
    return {"PREFECT_API_URL": api_url, **telemetry_env(telemetry)}


def worker_env(
    *, api_url: str, data_roots: Mapping[str, Path | str], telemetry: bool = False
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
