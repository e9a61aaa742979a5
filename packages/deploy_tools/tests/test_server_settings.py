"""The one place for server settings: the values the product depends on."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_tools import server_settings


def test_server_env_carries_recorder_batches_and_telemetry_off() -> None:
    env = server_settings.server_env(
        host="127.0.0.1", port=1234, database_url="sqlite+aiosqlite:///x"
    )
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "100"
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE"] == "100"
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_settings_are_valid_prefect_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect itself parses our names to the intended values (a typo would be ignored silently)."""
    from prefect.settings import Settings

    env = {
        **server_settings.server_env(
            host="127.0.0.1", port=1234, database_url="sqlite+aiosqlite:///x"
        ),
        **server_settings.worker_env(
            api_url="http://127.0.0.1:1234/api", data_roots={"ALPHA_DATA_ROOT": Path("/d")}
        ),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.server.services.task_run_recorder.batch_size == 100
    assert s.server.services.task_run_recorder.read_batch_size == 100
    assert s.server.analytics_enabled is False
    assert s.worker.query_seconds == 1
    assert s.server.api.port == 1234


def test_telemetry_is_opt_in(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy_tools.settings import load_settings

    monkeypatch.setenv("AIRNUB_TELEMETRY", "1")
    settings = load_settings(checkout)
    assert settings.telemetry is True
    env = server_settings.server_env(
        host="127.0.0.1", port=1, database_url="x", telemetry=settings.telemetry
    )
    assert "DO_NOT_TRACK" not in env
    assert "PREFECT_SERVER_ANALYTICS_ENABLED" not in env


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
