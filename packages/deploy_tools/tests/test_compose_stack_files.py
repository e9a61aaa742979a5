"""`ComposeStack` without Docker: names, values for the setup files, `.env`, the env files."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_tools import server_settings
from deploy_tools.local.stack import ComposeStack, Ports, StackError
from deploy_tools.local.stack.compose import project_name
from deploy_tools.settings import load_settings


@pytest.fixture
def checkout(make_checkout: Callable[[str], Path]) -> Path:
    """The fixture checkout in a folder whose name has a space, its local pool `pool-x`."""
    root = make_checkout("My Checkout")
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"local-process"', '"pool-x"'))
    return root


def set_data_root(root: Path, data_root: str) -> None:
    path = root / "packages" / "fixture_alpha" / "pyproject.toml"
    path.write_text(path.read_text().replace('"data/project_alpha_outputs"', f'"{data_root}"'))


def stack(root: Path) -> ComposeStack:
    return ComposeStack(load_settings(root), Ports(4300, 8800))


def test_the_project_name_comes_from_the_checkout_so_two_do_not_clash(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "pipelines", tmp_path / "b" / "pipelines"
    assert project_name(a) != project_name(b)
    assert project_name(a).startswith("airnub-pipelines-")
    assert project_name(a) == project_name(a)
    assert project_name(Path("/x/Ünïcode Name!")).startswith("airnub-n-code-name-")


def test_apply_env_is_what_the_containers_see(checkout: Path) -> None:
    set_data_root(checkout, "data/alpha_out")
    s = stack(checkout)
    alpha = s.apply_env(s.settings.project("alpha"))
    assert alpha == {
        "STACK_PROJECT_DIR": "/app",
        "STACK_POOL": "pool-x",
        "STACK_DATA_ROOT": "/app/data/alpha_out",
        "STACK_DEMO_DATA_URL": "http://demo-data:8000/alpha",
    }
    # beta has no data root: none is set for it
    assert s.apply_env(s.settings.project("beta")) == {
        "STACK_PROJECT_DIR": "/app",
        "STACK_POOL": "pool-x",
        "STACK_DEMO_DATA_URL": "http://demo-data:8000/beta",
    }
    assert (s.api_url, s.ui_url) == ("http://127.0.0.1:4300/api", "http://127.0.0.1:4300")


def test_a_data_root_outside_data_is_refused_naming_it(checkout: Path) -> None:
    set_data_root(checkout, "elsewhere/out")
    s = stack(checkout)
    with pytest.raises(
        StackError, match=r"data_root of project 'alpha' .*elsewhere/out\) is outside"
    ):
        s.apply_env(s.settings.project("alpha"))


def test_a_password_is_generated_once_into_a_private_env_file(checkout: Path) -> None:
    s = stack(checkout)
    notes: list[str] = []
    s.note = notes.append
    s.ensure_password()
    env = checkout / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("POSTGRES_PASSWORD=")]
    assert len(line) > len("POSTGRES_PASSWORD=") + 24
    assert not any(line.split("=", 1)[1] in n for n in notes)  # never printed
    s.ensure_password()
    assert env.read_text() == text  # kept


def test_a_password_is_added_to_an_env_file_without_one_and_others_kept(checkout: Path) -> None:
    env = checkout / ".env"
    env.write_text("AIRNUB_DATA_PORT=9999")  # no trailing newline
    stack(checkout).ensure_password()
    lines = env.read_text().splitlines()
    assert lines[0] == "AIRNUB_DATA_PORT=9999"
    assert lines[1].startswith("POSTGRES_PASSWORD=")
    env.write_text("POSTGRES_PASSWORD=mine\n")
    stack(checkout).ensure_password()
    assert env.read_text() == "POSTGRES_PASSWORD=mine\n"


def test_env_files_hold_the_shared_settings_and_no_secret(checkout: Path) -> None:
    set_data_root(checkout, "data/alpha_out")
    s = stack(checkout)
    s.write_env_files()
    server = (checkout / ".local" / "compose" / "server.env").read_text()
    worker = (checkout / ".local" / "compose" / "worker.env").read_text()
    for key, value in server_settings.telemetry_env().items():
        assert f"{key}={value}\n" in server
        assert f"{key}={value}\n" in worker
    assert "TASK_RUN_RECORDER" not in server  # Prefect's tuning is [tool.prefect], not env
    assert "PREFECT_SERVER_API_HOST=0.0.0.0\n" in server
    assert "DATABASE_CONNECTION_URL" not in server  # compose.yaml builds it from .env
    assert "ALPHA_DATA_ROOT=/app/data/alpha_out\n" in worker
    assert "BETA_" not in worker  # beta has no data root
    assert "PREFECT_API_URL=http://prefect-server:4200/api\n" in worker
    assert "PASSWORD" not in server + worker


def test_env_files_carry_the_telemetry_opt_in(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRNUB_TELEMETRY", "1")
    stack(checkout).write_env_files()
    for part in ("server", "worker"):
        text = (checkout / ".local" / "compose" / f"{part}.env").read_text()
        assert "PREFECT_SERVER_ANALYTICS_ENABLED=true\n" in text
        assert "DO_NOT_TRACK" not in text  # and the image sets none (test_image_contents)


def test_compose_args_name_the_files_env_file_and_project(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRNUB_COMPOSE_FILES", '["deploy/override.yaml"]')
    s = stack(checkout)
    root = s.settings.project_dir
    assert s.compose_args() == [
        "docker", "compose",
        "-f", str(root / "deploy" / "compose.yaml"),
        "-f", str(root / "deploy" / "override.yaml"),
        "--env-file", str(root / ".env"),
        "-p", project_name(root),
    ]  # fmt: skip
    env = s.compose_env()
    assert (env["AIRNUB_SERVER_PORT"], env["AIRNUB_DATA_PORT"]) == ("4300", "8800")
    assert env["STACK_DATA_DIR"] == str(root / "data")


def test_cpu_limits_are_lowered_to_a_smaller_host_unless_set(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy_tools.local.stack.compose import COMPOSE_CPU_LIMITS

    compose = stack(checkout)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert not set(COMPOSE_CPU_LIMITS) & set(compose.compose_env())
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    for name in COMPOSE_CPU_LIMITS:
        monkeypatch.delenv(name, raising=False)
    assert {n: compose.compose_env()[n] for n in COMPOSE_CPU_LIMITS} == dict.fromkeys(
        COMPOSE_CPU_LIMITS, "1"
    )
    monkeypatch.setenv("AIRNUB_SERVER_CPUS", "0.5")  # the shell's value is compose's
    (checkout / ".env").write_text("POSTGRES_PASSWORD=x\nAIRNUB_WORKER_CPUS=0.75\n")  # and .env's
    assert set(compose.compose_env()) & set(COMPOSE_CPU_LIMITS) == {"AIRNUB_POSTGRES_CPUS"}
