"""`AirnubSettings`: `AIRNUB_*` env over `[tool.airnub]` of the project folder's pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy_tools.settings import ProjectNotFoundError, find_project_dir, load_settings

REPO = Path(__file__).resolve().parents[3]

TABLE = """
[tool.airnub]
local_pool = "pool-x"

[[tool.airnub.projects]]
name = "alpha"
flows_package = "flows_alpha"
env_prefix = "ALPHA_"
demo_deployment = "alpha_pipeline/local"

[[tool.airnub.projects]]
name = "beta"
flows_package = "flows_beta"
env_prefix = "BETA_"
data_root = "/abs/beta"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRNUB_PROJECT_DIR", "AIRNUB_SERVER_PORT", "AIRNUB_LOCAL_POOL", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n' + TABLE)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    return tmp_path


def test_repo_table_describes_alpha() -> None:
    s = load_settings(REPO)
    (alpha,) = s.projects
    assert (alpha.name, alpha.flows_package, alpha.env_prefix) == ("alpha", "flows_alpha", "ALPHA_")
    assert alpha.data_root == REPO / "data" / "project_alpha_demo_outputs"
    assert alpha.local_deploy_file == REPO / "deploy" / "projects" / "alpha" / "prefect.local.yaml"
    assert alpha.data_root_env == "ALPHA_DATA_ROOT"
    assert alpha.demo_deployment == "alpha_pipeline/local"


def test_defaults_paths_and_env_over_table(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "sub" / "deeper")
    monkeypatch.setenv("AIRNUB_SERVER_PORT", "4300")
    monkeypatch.setenv("AIRNUB_LOCAL_POOL", "from-env")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    s = load_settings()
    assert s.project_dir == project.resolve()
    assert (s.server_port, s.data_port, s.local_pool) == (4300, 8765, "from-env")
    assert "server_port" in s.model_fields_set and "data_port" not in s.model_fields_set
    assert s.docker_host == "tcp://127.0.0.1:1"
    alpha, beta = s.projects
    assert alpha.data_root == project.resolve() / "data" / "alpha"
    assert alpha.deploy_dir == project.resolve() / "deploy" / "projects" / "alpha"
    assert beta.data_root == Path("/abs/beta")
    assert beta.demo_deployment is None


def test_project_dir_from_env(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    with pytest.raises(ProjectNotFoundError, match=r"\[tool.airnub\]"):
        load_settings()
    monkeypatch.setenv("AIRNUB_PROJECT_DIR", str(project))
    assert load_settings().project_dir == project.resolve()
    assert find_project_dir(None, project / "sub") == project.resolve()


def test_invalid_entries_name_the_key(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        TABLE.replace('env_prefix = "BETA_"', 'env_prefix = "beta"').replace(
            'local_pool = "pool-x"', 'local_pool = "pool-x"\nlocal_pol = "typo"'
        )
    )
    with pytest.raises(ValidationError) as info:
        load_settings(project)
    text = str(info.value)
    assert "projects.1.env_prefix" in text
    assert "local_pol" in text


def test_a_name_twice_is_an_error(project: Path) -> None:
    (project / "pyproject.toml").write_text(TABLE.replace('name = "beta"', 'name = "alpha"'))
    with pytest.raises(ValidationError, match="'alpha' is listed twice"):
        load_settings(project)
