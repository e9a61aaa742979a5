"""What the stacks add to Prefect's settings: only the values that differ per run.

Prefect's tuning for every stack (recorder batches, database pool and timeouts, worker polling,
analytics off) is `[tool.prefect]` in the checkout's `pyproject.toml`, which Prefect reads from
the working directory: the checkout root in process mode, `/app` in the image. The values here
(host, port, API URL, database, each project's data root, the telemetry opt-in) go into the
environment, which wins over that file; `prefect config view --show-sources` names the source
of each value in both modes.

Telemetry is off by default. `AIRNUB_TELEMETRY=1` (`telemetry` of `AirnubSettings`) turns it on
for the stack's server, worker and flow runs: the analytics setting is true and `DO_NOT_TRACK`,
even one inherited from the shell, is not passed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
TELEMETRY_ON = {"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}


def telemetry_env(telemetry: bool = False) -> dict[str, str]:
    """Telemetry switches: off unless the user opted in (`AIRNUB_TELEMETRY=1`)."""
    return dict(TELEMETRY_ON if telemetry else TELEMETRY_OFF)


def with_telemetry(env: Mapping[str, str], telemetry: bool) -> dict[str, str]:
    """`env` (e.g. the shell's) with the telemetry choice applied: an opt-in drops DO_NOT_TRACK."""
    out = {k: v for k, v in env.items() if not (telemetry and k == "DO_NOT_TRACK")}
    return {**out, **telemetry_env(telemetry)}


def server_env(
    *, host: str, port: int, database_url: str | None, telemetry: bool = False
) -> dict[str, str]:
    """Environment for `prefect server start`, wherever the server runs.

    `database_url` None: set elsewhere (compose.yaml passes the database's parts, so Prefect
    builds and quotes the URL itself and no file airnub writes holds the password).

    Example:
        >>> server_env(host="127.0.0.1", port=4200, database_url=None)["PREFECT_SERVER_API_PORT"]
        '4200'
    """
    db = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    return {
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        **db,
        **telemetry_env(telemetry),
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
        **{name: str(path) for name, path in data_roots.items()},
    }


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of the server's SQLite database at `path`."""
    return f"sqlite+aiosqlite:///{path}"
