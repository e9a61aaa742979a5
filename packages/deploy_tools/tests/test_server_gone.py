"""A server that goes away is recognised through causes and exception groups, and said in one line.

The service's steps are covered in test_deploy_service.py; here the helpers of `prefect_api`, the
catch-all of `main()` and the line `stack status` ends with.
"""

from __future__ import annotations

import httpx
import pytest

from deploy_tools.local.stack import PartStatus
from deploy_tools.prefect_api import connection_failure, describe, server_gone, use_api


def test_a_connection_error_is_found_under_groups_and_causes() -> None:
    lost = httpx.ConnectError("All connection attempts failed")
    try:
        try:
            raise lost
        except httpx.ConnectError as exc:
            raise RuntimeError("while polling") from exc
    except RuntimeError as wrapped:
        group = BaseExceptionGroup("task group", [ValueError("other"), wrapped])
    assert connection_failure(group) is lost
    assert connection_failure(ValueError("no")) is None


def test_describe_is_one_line() -> None:
    assert describe(httpx.ReadError("Connection reset by peer\nmore")) == (
        "ReadError: Connection reset by peer"
    )
    assert describe(httpx.ReadError("")) == "ReadError"


def test_a_server_that_does_not_answer_is_gone_whatever_the_error() -> None:
    error = KeyError("the client failed some other way")
    assert server_gone(error, "http://127.0.0.1:9/api") is error  # nothing listens there
    lost = httpx.ConnectError("refused")
    assert server_gone(ExceptionGroup("g", [lost]), "http://127.0.0.1:9/api") is lost


def test_use_api_lowers_prefect_client_retries() -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES

    with use_api("http://127.0.0.1:9/api", retries=1):
        assert PREFECT_CLIENT_MAX_RETRIES.value() == 1
        assert PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
    with use_api("http://127.0.0.1:9/api"):
        assert PREFECT_CLIENT_MAX_RETRIES.value() != 1  # Prefect's own setting


def test_main_ends_an_unhandled_lost_connection_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import deploy_tools.cli as cli

    def command() -> None:
        try:
            raise httpx.ConnectError("All connection attempts failed")
        except httpx.ConnectError as exc:
            raise RuntimeError("deep inside a command") from exc

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as caught:
        cli.main()
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: lost the connection to the Prefect server "
        "(ConnectError: All connection attempts failed)"
    )


def test_main_lets_other_errors_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import deploy_tools.cli as cli

    def command() -> None:
        raise KeyError("a bug, shown as one")

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(KeyError):
        cli.main()


def test_status_ends_with_one_line_naming_what_is_wrong() -> None:
    from deploy_tools.cli.stack import _unhealthy_line

    def part(name: str, pid: int | None, healthy: bool, detail: str = "") -> PartStatus:
        return PartStatus(name, pid, healthy, detail, f"/logs/{name}.log")

    ok = part("server", 1, True)
    assert _unhealthy_line([part("server", None, False), part("worker", None, False)]) == (
        "the Prefect server is not running; start the stack with `airnub stack up`"
    )
    assert _unhealthy_line([part("server", 7, False, "not answering at http://x/health")]) == (
        "the Prefect server (pid 7) is not answering at http://x/health; see /logs/server.log"
    )
    assert _unhealthy_line([ok, part("worker", 8, False), part("demo-data", None, False)]) == (
        "not healthy: worker, demo-data (`airnub stack logs <part>` shows why)"
    )
