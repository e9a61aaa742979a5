"""Prefect's tuning lives in [tool.prefect]; the stacks add only what differs per run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_tools import server_settings

ROOT = Path(__file__).resolve().parents[3]
PREFECT = Path(sys.executable).parent / "prefect"

# What the root pyproject.toml's [tool.prefect] must give Prefect, as Prefect itself reports it.
TUNING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "20",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "20",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT": "60",
    "PREFECT_SERVER_DATABASE_TIMEOUT": "30",
    "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "15",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "10",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "False",
}


def config_sources(env: dict[str, str], cwd: Path) -> dict[str, tuple[str, str]]:
    """`prefect config view --show-sources` as {name: (value, source)}."""
    out = subprocess.run(
        [str(PREFECT), "config", "view", "--show-sources"],
        env=env, cwd=cwd, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    shown = {}
    for line in out.splitlines():
        name, eq, rest = line.partition("=")
        if eq and "(from " in rest:
            value, _, source = rest.rpartition(" (from ")
            shown[name] = (value.strip("'"), source.rstrip(")"))
    return shown


def bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}
    return {**env, "PREFECT_HOME": "/nonexistent-prefect-home", **extra}


def test_prefect_reads_the_tuning_from_tool_prefect_in_the_checkout() -> None:
    shown = config_sources(bare_env(), ROOT)
    assert {k: shown.get(k) for k in TUNING} == {
        k: (v, "pyproject.toml") for k, v in TUNING.items()
    }


def test_the_per_run_environment_wins_and_is_named_as_such() -> None:
    env = {
        **server_settings.server_env(host="127.0.0.1", port=1234, database_url=None),
        **server_settings.worker_env(api_url="http://127.0.0.1:1234/api", data_roots={}),
    }
    shown = config_sources(bare_env(**env), ROOT)
    assert shown["PREFECT_SERVER_API_PORT"] == ("1234", "env")
    assert shown["PREFECT_API_URL"] == ("http://127.0.0.1:1234/api", "env")
    assert shown["PREFECT_SERVER_ANALYTICS_ENABLED"] == ("false", "env")
    assert shown["PREFECT_WORKER_QUERY_SECONDS"] == ("1", "pyproject.toml")


def test_telemetry_is_off_unless_opted_in_and_the_opt_in_drops_do_not_track() -> None:
    shell = {"DO_NOT_TRACK": "1", "HOME": "/h"}  # e.g. exported by the user's shell or CI
    off = server_settings.with_telemetry(shell, telemetry=False)
    assert off == {"HOME": "/h", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    on = server_settings.with_telemetry(shell, telemetry=True)
    assert on == {"HOME": "/h", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    assert "DO_NOT_TRACK" not in server_settings.worker_env(
        api_url="http://x/api", data_roots={}, telemetry=True
    )


def test_airnub_telemetry_setting(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy_tools.settings import load_settings

    assert load_settings(checkout).telemetry is False
    monkeypatch.setenv("AIRNUB_TELEMETRY", "1")
    assert load_settings(checkout).telemetry is True


def test_worker_env_has_no_secrets_and_every_project_data_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    env = server_settings.worker_env(
        api_url="http://127.0.0.1:1/api",
        data_roots={"ALPHA_DATA_ROOT": Path("/abs/a"), "BETA_DATA_ROOT": Path("/abs/b")},
    )
    assert env["ALPHA_DATA_ROOT"] == "/abs/a"
    assert env["BETA_DATA_ROOT"] == "/abs/b"
    assert "s3cr3t" not in env.values()
