"""Validation of deploy/ files: every problem named by file and key, before anything is applied."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy_tools.setup import SetupFilesError, load_plan

REPO_DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
ENV = {
    "AIRNUB_PROJECT_DIR": "/p",
    "AIRNUB_DATA_ROOT": "/p/data",
    "AIRNUB_DEMO_DATA_URL": "http://127.0.0.1:8765",
}


@pytest.fixture
def deploy_dir(tmp_path: Path) -> Path:
    """A copy of the repo's deploy/ to edit."""
    return Path(shutil.copytree(REPO_DEPLOY, tmp_path / "deploy"))


def problems(deploy_dir: Path, env: dict[str, str], file: str = "prefect.local.yaml") -> list[str]:
    with pytest.raises(SetupFilesError) as info:
        load_plan(deploy_dir, file, env)
    return info.value.problems


def test_repo_files_are_valid(deploy_dir: Path) -> None:
    plan = load_plan(deploy_dir, "prefect.local.yaml", ENV)
    assert [p.name for p in plan.work_pools] == ["alpha-local"]
    assert {d.flow.name for d in plan.deployments} == {"ingest", "process", "alpha_pipeline"}
    assert all(d.spec.schedules == [] for d in plan.deployments)
    assert all(d.pull_steps for d in plan.deployments)
    skipped = {b.spec.name: b.skipped_because for b in plan.blocks}
    assert skipped["alpha-local-storage"] is None
    assert skipped["alpha-s3"] == "AIRNUB_S3_BUCKET not set"
    assert skipped["alpha-source-token"] == "AIRNUB_SOURCE_TOKEN not set"


def test_alpha_sources_file_matches_the_demo_dataset(deploy_dir: Path) -> None:
    """The variable file lists exactly the files the stack serves (kept in sync with flows_alpha)."""
    from flows_alpha.demo_data import demo_data_dir, demo_sources

    plan = load_plan(deploy_dir, "prefect.local.yaml", ENV)
    (var,) = [v for v in plan.variables if v.name == "alpha_sources"]
    assert var.value == demo_sources(ENV["AIRNUB_DEMO_DATA_URL"])
    for source in var.value:
        assert (demo_data_dir() / source["url"].rsplit("/", 1)[1]).is_file()


def test_invalid_variable_file_names_file_key_and_expectation(deploy_dir: Path) -> None:
    path = deploy_dir / "variables" / "alpha_sources.yaml"
    path.write_text(path.read_text().replace("format: csv", "format: xlsx", 1))
    (deploy_dir / "variables" / "bad.yaml").write_text("name: Bad-Name\ntags: nope\n")
    found = problems(deploy_dir, ENV)
    text = "\n".join(found)
    assert "variables/alpha_sources.yaml: value:" in text
    assert "[0][format]" in text
    assert "variables/bad.yaml: name: String should match pattern" in text
    assert "variables/bad.yaml: value: Field required" in text
    assert "variables/bad.yaml: tags: Input should be a valid list (got 'nope')" in text


def test_not_yaml_and_unknown_keys(deploy_dir: Path) -> None:
    (deploy_dir / "variables" / "broken.yaml").write_text("name: [unclosed\n")
    (deploy_dir / "work_pools" / "typo.yaml").write_text("name: p\ntype: process\nconcurency: 2\n")
    text = "\n".join(problems(deploy_dir, ENV))
    assert "variables/broken.yaml: not valid YAML" in text
    assert "work_pools/typo.yaml: concurency: Extra inputs are not permitted" in text


def test_missing_placeholder_names_the_variable(deploy_dir: Path) -> None:
    text = "\n".join(
        problems(deploy_dir, {k: v for k, v in ENV.items() if k != "AIRNUB_DEMO_DATA_URL"})
    )
    assert (
        "variables/alpha_sources.yaml: value[0].url: environment variable AIRNUB_DEMO_DATA_URL"
        in text
    )


def test_missing_secret_env_names_it_and_never_shows_a_value(deploy_dir: Path) -> None:
    env = {**ENV, "AIRNUB_S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "AKIA-SHOULD-NOT-SHOW"}
    text = "\n".join(problems(deploy_dir, env))
    assert (
        "blocks/alpha-s3-credentials.yaml: secret_env.aws_secret_access_key: environment "
        "variable AWS_SECRET_ACCESS_KEY is not set"
    ) in text
    assert "AKIA-SHOULD-NOT-SHOW" not in text


def test_secret_blocks_resolve_from_env_when_enabled(deploy_dir: Path) -> None:
    env = {**ENV, "AIRNUB_S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    plan = load_plan(deploy_dir, "prefect.local.yaml", env)
    names = [b.spec.name for b in plan.blocks]
    # a block is applied after the blocks it refers to
    assert names.index("alpha-s3-credentials") < names.index("alpha-s3")
    (creds,) = [b for b in plan.blocks if b.spec.name == "alpha-s3-credentials"]
    assert creds.data["aws_secret_access_key"] == "s"


def test_secret_in_data_and_unknown_block_field_are_rejected(deploy_dir: Path) -> None:
    (deploy_dir / "blocks" / "token.yaml").write_text(
        "type: secret\nname: token\ndata: {value: plain, colour: red}\nsecret_env: {value: TOKEN}\n"
    )
    text = "\n".join(problems(deploy_dir, {**ENV, "TOKEN": "t"}))
    assert "blocks/token.yaml: secret_env.value: also given in data" in text
    assert "blocks/token.yaml: colour: not a field of block type 'secret'" in text


def test_deployments_need_explicit_pull_and_schedules(deploy_dir: Path) -> None:
    dep = "{name: a, entrypoint: 'flows_alpha.ingest:ingest', work_pool: {name: alpha-local}"
    (deploy_dir / "no-pull.yaml").write_text(f"deployments:\n  - {dep}, schedules: []}}\n")
    (deploy_dir / "no-schedules.yaml").write_text(f"pull: []\ndeployments:\n  - {dep}}}\n")
    assert (
        "deploy/no-pull.yaml: deployments[0] (a).pull: missing"
        in problems(deploy_dir, ENV, "no-pull.yaml")[0]
    )
    assert problems(deploy_dir, ENV, "no-schedules.yaml") == [
        "deploy/no-schedules.yaml: deployments.0.schedules: Field required"
    ]


def test_broken_entrypoint_stops_the_plan(deploy_dir: Path) -> None:
    path = deploy_dir / "prefect.local.yaml"
    path.write_text(
        path.read_text().replace("flows_alpha.process:process", "flows_alpha.process:nope")
    )
    text = "\n".join(problems(deploy_dir, ENV))
    assert "deployments[1] (local).entrypoint: flows_alpha.process:nope" in text


def test_unknown_job_variable_of_a_pool(deploy_dir: Path) -> None:
    (deploy_dir / "work_pools" / "alpha-local.yaml").write_text(
        "name: alpha-local\ntype: process\njob_variables: {imagez: x}\n"
    )
    text = "\n".join(problems(deploy_dir, ENV))
    assert "work_pools/alpha-local.yaml: job_variables.imagez: not a process job variable" in text


def test_source_token_block_takes_its_value_from_env(deploy_dir: Path) -> None:
    plan = load_plan(deploy_dir, "prefect.local.yaml", {**ENV, "AIRNUB_SOURCE_TOKEN": "t0k"})
    (token,) = [b for b in plan.blocks if b.spec.name == "alpha-source-token"]
    assert (token.spec.type, token.skipped_because, token.data) == (
        "secret",
        None,
        {"value": "t0k"},
    )


def test_url_with_userinfo_in_a_variable_is_refused_without_showing_it(deploy_dir: Path) -> None:
    path = deploy_dir / "variables" / "alpha_sources.yaml"
    path.write_text(
        path.read_text().replace("${AIRNUB_DEMO_DATA_URL}/stations", "https://me:pw-SECRET@h/s", 1)
    )
    (deploy_dir / "variables" / "other.yaml").write_text(
        "name: other\nvalue: {mirror: 'https://pw-SECRET@h/'}\n"
    )
    text = "\n".join(problems(deploy_dir, ENV))
    # The generic check (any variable) and the sources' own validation both refuse it.
    assert "variables/alpha_sources.yaml: value[1].url: a URL with a user name or password" in text
    assert "alpha_sources[1]: Value error, source 'stations': the URL holds a user name" in text
    assert "variables/other.yaml: value.mirror: a URL with a user name or password" in text
    assert "pw-SECRET" not in text


def test_url_with_userinfo_in_deployment_parameters_is_refused(deploy_dir: Path) -> None:
    path = deploy_dir / "prefect.local.yaml"
    path.write_text(
        path.read_text().replace(
            "    tags: [alpha, local]\n",
            "    tags: [alpha, local]\n"
            "    parameters: {sources: [{name: a, url: 'https://u:pw-SECRET@h/a.csv'}]}\n",
            1,
        )
    )
    text = "\n".join(problems(deploy_dir, ENV))
    assert (
        "prefect.local.yaml: deployments[0] (local).parameters.sources[0].url: "
        "a URL with a user name or password"
    ) in text
    assert "pw-SECRET" not in text
