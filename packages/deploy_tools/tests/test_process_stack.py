"""`ProcessStack` without starting anything: ports, values for the files, logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy_tools.local.stack import Ports, ProcessStack, StackError
from deploy_tools.local.stack.demo_data import demo_data_folder
from deploy_tools.settings import load_settings


@pytest.fixture
def checkout(checkout: Path) -> Path:
    """The fixture checkout with its local pool called `pool-x`."""
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"local-process"', '"pool-x"'))
    return checkout


def test_ports_arguments_then_settings_then_last_used_then_defaults(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = ProcessStack(load_settings(checkout))
    assert stack.ports == Ports(4200, 8765)
    (checkout / ".local").mkdir()
    (checkout / ".local" / "stack.json").write_text(
        json.dumps({"server_port": 4300, "data_port": 8800})
    )
    assert ProcessStack(load_settings(checkout)).ports == Ports(4300, 8800)
    monkeypatch.setenv("AIRNUB_SERVER_PORT", "4400")
    stack = ProcessStack(load_settings(checkout))
    assert stack.wanted_ports() == Ports(4400, 8800)
    assert stack.wanted_ports(server=4500, data=8900) == Ports(4500, 8900)


def test_apply_env_is_shared_plus_each_project_own(checkout: Path) -> None:
    settings = load_settings(checkout)
    stack = ProcessStack(settings, Ports(1, 2))
    root = checkout.resolve()
    assert stack.apply_env() == {"STACK_PROJECT_DIR": str(root), "STACK_POOL": "pool-x"}
    alpha = stack.apply_env(settings.project("alpha"))
    assert alpha["STACK_DATA_ROOT"] == str(root / "data" / "project_alpha_outputs")
    assert alpha["STACK_DEMO_DATA_URL"] == "http://127.0.0.1:2/alpha"
    beta = stack.apply_env(settings.project("beta"))
    assert "STACK_DATA_ROOT" not in beta  # no env_prefix, so no data root
    assert beta["STACK_DEMO_DATA_URL"] == "http://127.0.0.1:2/beta"
    assert (stack.api_url, stack.ui_url) == ("http://127.0.0.1:1/api", "http://127.0.0.1:1")


def test_a_demo_data_module_that_does_not_import_is_a_stack_error(checkout: Path) -> None:
    with pytest.raises(StackError, match="demo_data 'no_such_module_x' does not import"):
        demo_data_folder("no_such_module_x")


def test_logs_of_an_unknown_part_name_the_known_ones(checkout: Path) -> None:
    stack = ProcessStack(load_settings(checkout), Ports(1, 2))
    assert [log.lines for log in stack.logs()] == [None, None, None]
    with pytest.raises(ValueError, match="expected server, worker, demo-data or all"):
        stack.logs("db")
