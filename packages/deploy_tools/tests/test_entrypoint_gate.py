"""`airnub check entrypoints` imports each entrypoint without a server and lists every broken one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy_tools.cli import app

REPO = Path(__file__).resolve().parents[3]


def test_repo_entrypoints_all_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(
        "PREFECT_API_URL", "http://127.0.0.1:9/api"
    )  # nothing listens: no server used
    result = CliRunner().invoke(app, ["check", "entrypoints"])
    assert result.exit_code == 0, result.output
    assert "all 6 import as flows" in result.output


def test_every_broken_entrypoint_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prefect.local.yaml").write_text(
        "deployments:\n"
        "  - {name: good, entrypoint: 'flows_alpha.ingest:ingest'}\n"
        "  - {name: no-module, entrypoint: 'no_such_pkg.flows:f'}\n"
        "  - {name: no-attr, entrypoint: 'flows_alpha.ingest:not_there'}\n"
        "  - {name: not-a-flow, entrypoint: 'json:dumps'}\n"
        "  - {name: import-error, entrypoint: 'raises_on_import.py:f'}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["check", "entrypoints", "deploy/prefect.local.yaml"])
    assert result.exit_code == 1
    out = result.output
    assert "4 of 5 entrypoints are broken" in out
    assert "f/no-module: no_such_pkg.flows:f: ModuleNotFoundError" in out
    assert "not_there/no-attr: flows_alpha.ingest:not_there" in out
    assert "dumps/not-a-flow: json:dumps: json:dumps is a function, not a Prefect flow" in out
    assert "f/import-error: raises_on_import.py:f:" in out
    assert "boom at import" in out
    assert "alpha_ingest/good" not in out


def test_a_broken_deployment_is_named_flow_slash_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every project's deployments are called `local`: the flow part says which one is broken.
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prefect.local.yaml").write_text(
        "deployments:\n"
        "  - {name: local, entrypoint: 'flows_alpha.ingest:ingest'}\n"
        "  - {name: local, entrypoint: 'flows_alpha.gone:process'}\n"
        "  - {name: local, flow_name: alpha_pipeline, entrypoint: 'flows_alpha.gone:main'}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["check", "entrypoints", "deploy/prefect.local.yaml"])
    assert result.exit_code == 1
    out = result.output
    # a flow that does not import is named after its function, or its `flow_name` key
    assert "broken deploy/prefect.local.yaml: process/local: flows_alpha.gone:process:" in out
    assert "broken deploy/prefect.local.yaml: alpha_pipeline/local: flows_alpha.gone:main:" in out
    assert "ingest/local" not in out


def test_deployments_are_named_by_the_flow_they_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loaded flow's name, not the function's: two functions whose flows are both called
    `alpha_ingest` would be one deployment on the server, the second overwriting the first."""
    from deploy_tools.setup.entrypoints import _flow_name, load_flow

    (tmp_path / "other.py").write_text(
        "from prefect import flow\n\n@flow(name='alpha_ingest')\ndef fetch():\n    pass\n"
    )
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prefect.local.yaml").write_text(
        "deployments:\n"
        "  - {name: local, entrypoint: 'flows_alpha.ingest:ingest'}\n"
        "  - {name: local, flow_name: ignored, entrypoint: 'other.py:fetch'}\n"
        "  - {name: local, entrypoint: 'flows_alpha.process:process'}\n"
    )
    monkeypatch.chdir(tmp_path)
    ingest = load_flow("flows_alpha.ingest:ingest")
    assert _flow_name({"flow_name": "ignored"}, "flows_alpha.ingest:ingest", ingest) == (
        "alpha_ingest"
    )
    assert _flow_name({}, "flows_alpha.gone:ingest") == "ingest"
    result = CliRunner().invoke(app, ["check", "entrypoints", "deploy/prefect.local.yaml"])
    assert result.exit_code == 1
    assert (
        "broken deploy/prefect.local.yaml: alpha_ingest/local: other.py:fetch: alpha_ingest/local "
        "is also the deployment of flows_alpha.ingest:ingest"
    ) in " ".join(result.output.split())
    assert "1 of 3 entrypoints are broken" in result.output
