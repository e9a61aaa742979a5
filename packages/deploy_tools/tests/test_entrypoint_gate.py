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
    assert "ingest/good" not in out


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
    assert "broken deploy/prefect.local.yaml: process/local: flows_alpha.gone:process:" in out
    assert "broken deploy/prefect.local.yaml: alpha_pipeline/local: flows_alpha.gone:main:" in out
    assert "ingest/local" not in out
