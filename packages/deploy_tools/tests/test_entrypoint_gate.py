"""`airnub check entrypoints` imports each entrypoint without a server and lists every broken one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy_tools.cli import app


@pytest.fixture
def checkout(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture checkout as the current folder; nothing listens at its API (no server used)."""
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    return checkout


def test_every_project_entrypoint_loads(checkout: Path) -> None:
    result = CliRunner().invoke(app, ["check", "entrypoints"])
    assert result.exit_code == 0, result.output
    # alpha's local and remote deployments (3 + 3), beta's local one
    assert "all 7 import as flows" in result.output


def test_every_broken_entrypoint_is_listed(checkout: Path) -> None:
    (checkout / "raises_on_import.py").write_text("raise RuntimeError('boom at import')\n")
    (checkout / "deploy" / "prefect.local.yaml").write_text(
        "deployments:\n"
        "  - {name: good, entrypoint: 'airnub_fixture_alpha.flows:alpha_ingest'}\n"
        "  - {name: no-module, entrypoint: 'no_such_pkg.flows:f'}\n"
        "  - {name: no-attr, entrypoint: 'airnub_fixture_alpha.flows:not_there'}\n"
        "  - {name: not-a-flow, entrypoint: 'json:dumps'}\n"
        "  - {name: import-error, entrypoint: 'raises_on_import.py:f'}\n"
    )
    result = CliRunner().invoke(app, ["check", "entrypoints", "deploy/prefect.local.yaml"])
    assert result.exit_code == 1
    out = result.output
    assert "4 of 5 entrypoints are broken" in out
    assert "f/no-module: no_such_pkg.flows:f: ModuleNotFoundError" in out
    assert "not_there/no-attr: airnub_fixture_alpha.flows:not_there" in out
    assert "dumps/not-a-flow: json:dumps: json:dumps is a function, not a Prefect flow" in out
    assert "f/import-error: raises_on_import.py:f:" in out
    assert "boom at import" in out
    assert "alpha_ingest/good" not in out


def test_a_broken_deployment_is_named_flow_slash_deployment(checkout: Path) -> None:
    # Every project's deployments are called `local`: the flow part says which one is broken.
    (checkout / "deploy" / "prefect.local.yaml").write_text(
        "deployments:\n"
        "  - {name: local, entrypoint: 'airnub_fixture_alpha.flows:alpha_ingest'}\n"
        "  - {name: local, entrypoint: 'airnub_fixture_alpha.gone:alpha_process'}\n"
        "  - {name: local, flow_name: alpha_pipeline, entrypoint: 'airnub_fixture_alpha.gone:main'}\n"
    )
    result = CliRunner().invoke(app, ["check", "entrypoints", "deploy/prefect.local.yaml"])
    assert result.exit_code == 1
    out = result.output
    assert (
        "broken deploy/prefect.local.yaml: alpha_process/local: "
        "airnub_fixture_alpha.gone:alpha_process:"
    ) in out
    assert (
        "broken deploy/prefect.local.yaml: alpha_pipeline/local: airnub_fixture_alpha.gone:main:"
    ) in out
    assert "alpha_ingest/local" not in out


def test_deployments_are_named_by_the_flow_they_load(checkout: Path) -> None:
    """The loaded flow's name, not the function's: two functions whose flows are both called
    `alpha_ingest` would be one deployment on the server, the second overwriting the first."""
    from deploy_tools.setup.entrypoints import flow_name, load_flow

    (checkout / "other.py").write_text(
        "from prefect import flow\n\n@flow(name='alpha_ingest')\ndef fetch():\n    pass\n"
    )
    (checkout / "deploy" / "prefect.local.yaml").write_text(
        "deployments:\n"
        "  - {name: local, entrypoint: 'airnub_fixture_alpha.flows:alpha_ingest'}\n"
        "  - {name: local, flow_name: ignored, entrypoint: 'other.py:fetch'}\n"
        "  - {name: local, entrypoint: 'airnub_fixture_alpha.flows:alpha_process'}\n"
    )
    ingest = load_flow("airnub_fixture_alpha.flows:alpha_ingest")
    assert flow_name({"flow_name": "ignored"}, "x:y", ingest) == "alpha_ingest"
    assert flow_name({}, "airnub_fixture_alpha.gone:ingest") == "ingest"
    result = CliRunner().invoke(app, ["check", "entrypoints", "deploy/prefect.local.yaml"])
    assert result.exit_code == 1
    assert (
        "broken deploy/prefect.local.yaml: alpha_ingest/local: other.py:fetch: alpha_ingest/local "
        "is also the deployment of airnub_fixture_alpha.flows:alpha_ingest"
    ) in " ".join(result.output.split())
    assert "1 of 3 entrypoints are broken" in result.output
