"""`AirnubSettings`: `AIRNUB_*` env over the root `[tool.airnub]` table; each project found in
the workspace member that says so (`[tool.airnub.project]` in its own pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy_tools.settings import (
    ProjectFileError,
    ProjectNotFoundError,
    discover_projects,
    find_project_dir,
    load_settings,
    workspace_members,
)

ROOT = """
[project]
name = "x"

[tool.uv.workspace]
members = ["packages/*"]

[tool.airnub]
local_pool = "pool-x"
"""


def member(root: Path, folder: str, table: str | None, *, package: str | None = None) -> Path:
    """A workspace member `packages/<folder>` whose pyproject.toml holds `table` (if any)."""
    path = root / "packages" / folder
    path.mkdir(parents=True)
    text = f'[project]\nname = "{folder.replace("_", "-")}"\n'
    if package:
        text += f'\n[tool.hatch.build.targets.wheel]\npackages = ["src/{package}"]\n'
    if table is not None:
        text += f"\n[tool.airnub.project]\n{table}"
    (path / "pyproject.toml").write_text(text)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with two projects (alpha with a prefix, beta with an absolute data root) and
    a member that is not a project."""
    for name in ("AIRNUB_PROJECT_DIR", "AIRNUB_SERVER_PORT", "AIRNUB_LOCAL_POOL", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "pyproject.toml").write_text(ROOT)
    member(
        tmp_path,
        "pkg_alpha",
        'name = "alpha"\nenv_prefix = "ALPHA_"\ndemo_deployment = "alpha_pipeline/local"\n',
        package="alpha_pkg",
    )
    member(tmp_path, "pkg_beta", 'name = "beta"\nenv_prefix = "BETA_"\ndata_root = "/abs/beta"\n')
    member(tmp_path, "library", None)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    return tmp_path


def test_the_fixture_checkout_describes_its_two_projects(checkout: Path) -> None:
    s = load_settings(checkout)
    root = checkout.resolve()
    alpha, beta = s.projects
    assert (alpha.name, alpha.flows_package, alpha.distribution) == (
        "alpha",
        "airnub_fixture_alpha",
        "airnub-fixture-alpha",
    )
    assert alpha.member_dir == root / "packages" / "fixture_alpha"
    assert (alpha.env_prefix, alpha.data_root_env) == ("ALPHA_", "ALPHA_DATA_ROOT")
    assert alpha.data_root == root / "data" / "project_alpha_outputs"
    assert alpha.local_deploy_file == root / "deploy" / "projects" / "alpha" / "prefect.local.yaml"
    assert alpha.remote_deploy_file == root / "deploy" / "projects" / "alpha" / "prefect.yaml"
    assert (alpha.demo_deployment, alpha.demo_data) == (
        "alpha_pipeline/local",
        "airnub_fixture_alpha.demo_data",
    )
    assert (beta.name, beta.flows_package, beta.env_prefix, beta.data_root) == (
        "beta",
        "airnub_fixture_beta",
        None,
        None,
    )
    assert (beta.data_root_env, beta.demo_data) == (None, None)
    assert s.names() == "alpha, beta"


def test_projects_are_the_members_with_a_table_in_folder_order(project: Path) -> None:
    assert [m.name for m in workspace_members(project)] == ["library", "pkg_alpha", "pkg_beta"]
    found = discover_projects(project)
    assert [p["name"] for p in found] == ["alpha", "beta"]  # `library` has no table
    alpha, beta = load_settings(project).projects
    assert alpha.flows_package == "alpha_pkg"  # the wheel's package
    assert beta.flows_package == "pkg_beta"  # else the member's folder
    assert (alpha.distribution, beta.distribution) == ("pkg-alpha", "pkg-beta")
    assert alpha.member_dir == project.resolve() / "packages" / "pkg_alpha"


def test_an_excluded_member_is_not_a_project(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        ROOT.replace(
            'members = ["packages/*"]', 'members = ["packages/*"]\nexclude = ["packages/pkg_b*"]'
        )
    )
    assert [m.name for m in workspace_members(project)] == ["library", "pkg_alpha"]
    assert [p.name for p in load_settings(project).projects] == ["alpha"]


def test_a_folder_that_is_no_member_is_not_a_project(project: Path) -> None:
    (project / "pyproject.toml").write_text(ROOT.replace('"packages/*"', '"packages/pkg_a*"'))
    (project / "packages" / "loose.txt").write_text("a file, not a member")
    assert [p.name for p in load_settings(project).projects] == ["alpha"]


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


def test_an_invalid_table_names_the_file_and_the_key(project: Path) -> None:
    path = project / "packages" / "pkg_beta" / "pyproject.toml"
    path.write_text(path.read_text().replace('env_prefix = "BETA_"', 'env_prefix = "beta"'))
    with pytest.raises(ProjectFileError) as info:
        load_settings(project)
    text = str(info.value)
    assert text.startswith("packages/pkg_beta/pyproject.toml [tool.airnub.project]: ")
    assert "env_prefix: String should match pattern" in text


def test_an_unknown_key_of_a_table_is_named(project: Path) -> None:
    path = project / "packages" / "pkg_beta" / "pyproject.toml"
    path.write_text(path.read_text() + 'demo_deploymnet = "x/y"\n')
    with pytest.raises(ProjectFileError, match=r"pkg_beta/pyproject.toml .*demo_deploymnet: Extra"):
        load_settings(project)


def test_a_table_that_is_no_table_or_no_toml_names_the_file(project: Path) -> None:
    path = project / "packages" / "pkg_beta" / "pyproject.toml"
    path.write_text('[project]\nname = "b"\n[tool.airnub]\nproject = "beta"\n')
    with pytest.raises(ProjectFileError, match=r"^packages/pkg_beta/pyproject.toml: .* a table"):
        load_settings(project)
    path.write_text("[project\n")
    with pytest.raises(
        ProjectFileError, match=r"^packages/pkg_beta/pyproject.toml: not valid TOML"
    ):
        load_settings(project)


def test_an_unknown_shared_key_is_named(project: Path) -> None:
    (project / "pyproject.toml").write_text(ROOT + 'local_pol = "typo"\n')
    with pytest.raises(ValidationError, match="local_pol"):
        load_settings(project)


def test_two_members_claiming_one_name_name_both(project: Path) -> None:
    path = project / "packages" / "pkg_beta" / "pyproject.toml"
    path.write_text(path.read_text().replace('name = "beta"', 'name = "alpha"'))
    with pytest.raises(ProjectFileError) as info:
        load_settings(project)
    assert (
        "'alpha' is claimed by both packages/pkg_alpha/pyproject.toml and "
        "packages/pkg_beta/pyproject.toml"
    ) in str(info.value)


def test_two_members_of_one_folder_name_are_told_apart(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        ROOT.replace('["packages/*"]', '["packages/*", "libs/*"]')
    )
    other = project / "libs" / "pkg_alpha"
    other.mkdir(parents=True)
    (other / "pyproject.toml").write_text(
        '[project]\nname = "libs-alpha"\n\n[tool.airnub.project]\nname = "alpha"\n'
    )
    with pytest.raises(ProjectFileError) as info:
        load_settings(project)
    assert (
        "'alpha' is claimed by both libs/pkg_alpha/pyproject.toml and "
        "packages/pkg_alpha/pyproject.toml"
    ) in str(info.value)


def test_a_root_projects_list_is_refused_saying_where_projects_live(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        ROOT + '\n[[tool.airnub.projects]]\nname = "alpha"\nflows_package = "pkg_alpha"\n'
    )
    with pytest.raises(ProjectFileError) as info:
        load_settings(project)
    text = str(info.value)
    assert "[[tool.airnub.projects]] is no longer read" in text
    assert "[tool.airnub.project]" in text


def test_env_prefix_is_optional_and_then_there_is_no_data_root(project: Path) -> None:
    path = project / "packages" / "pkg_beta" / "pyproject.toml"
    path.write_text(path.read_text().replace('env_prefix = "BETA_"\ndata_root = "/abs/beta"\n', ""))
    beta = load_settings(project).project("beta")
    assert (beta.env_prefix, beta.data_root, beta.data_root_env) == (None, None, None)


def test_a_data_root_without_env_prefix_is_refused(project: Path) -> None:
    path = project / "packages" / "pkg_beta" / "pyproject.toml"
    path.write_text(path.read_text().replace('env_prefix = "BETA_"\n', ""))
    with pytest.raises(ProjectFileError) as info:
        load_settings(project)
    text = str(info.value)
    assert text.startswith("packages/pkg_beta/pyproject.toml [tool.airnub.project]: ")
    assert "data_root is read through env_prefix" in text


def test_an_unknown_project_names_the_known_ones(project: Path) -> None:
    with pytest.raises(
        KeyError, match=r"no project 'gamma' in the workspace \(known: alpha, beta\)"
    ):
        load_settings(project).project("gamma")


def test_postgres_image_is_the_one_compose_yaml_pins(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRNUB_POSTGRES_IMAGE", raising=False)
    assert load_settings(project).postgres_image == ""  # no deploy/compose.yaml: none
    (project / "deploy").mkdir(exist_ok=True)
    (project / "deploy/compose.yaml").write_text(
        "services:\n  postgres:\n    image: ${AIRNUB_POSTGRES_IMAGE:-postgres:15@sha256:ab}\n"
    )
    assert load_settings(project).postgres_image == "postgres:15@sha256:ab"
    monkeypatch.setenv("AIRNUB_POSTGRES_IMAGE", "airnub/postgres:15-bookworm")
    assert load_settings(project).postgres_image == "airnub/postgres:15-bookworm"
