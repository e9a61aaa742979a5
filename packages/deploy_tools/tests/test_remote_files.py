"""The remote side of deploy/ without a server: pools per target, the values the containers
see, each project's prefect.yaml as Prefect reads it, and the steps refusing empty inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from deploy_tools.remote import steps as remote_steps
from deploy_tools.remote.service import (
    load_remote_file,
    remote_apply_env,
    remote_files,
    remote_setup_files,
)
from deploy_tools.reporting import DeployError
from deploy_tools.settings import load_settings
from deploy_tools.setup import load_plan


@pytest.fixture
def checkout(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture checkout, with a demo-data server for the remote's containers."""
    monkeypatch.setenv("AIRNUB_DEMO_DATA_URL", "https://files.example.com")
    return checkout


def test_each_target_gets_its_own_pools(checkout: Path) -> None:
    settings = load_settings(checkout)
    remote = load_plan(remote_setup_files(settings), base=settings.project_dir, target="remote")
    assert [(p.name, p.type) for p in remote.work_pools] == [
        ("airnub-docker", "docker"),
        ("airnub-kubernetes", "kubernetes"),
    ]
    assert remote.deployments == []  # the remote's deployments are prefect.yaml's
    assert {v.name for v in remote.variables} == {"alpha_sources"}
    (sources,) = remote.variables
    # each project gets its own folder of the demo-data server
    assert sources.value[0]["url"] == "https://files.example.com/alpha/cities.csv"
    storage = next(b for b in remote.blocks if b.spec.name == "alpha-local-storage")
    assert storage.data == {"basepath": "/app/data/project_alpha_outputs"}


def test_the_containers_see_app_and_app_data(checkout: Path) -> None:
    settings = load_settings(checkout)
    env = remote_apply_env(settings, settings.project("alpha"))
    assert env["STACK_PROJECT_DIR"] == "/app"
    assert env["STACK_DATA_ROOT"] == "/app/data/project_alpha_outputs"
    assert env["STACK_DEMO_DATA_URL"] == "https://files.example.com/alpha"
    beta = remote_apply_env(settings, settings.project("beta"))
    assert "STACK_DATA_ROOT" not in beta  # beta has no data root
    assert beta["STACK_DEMO_DATA_URL"] == "https://files.example.com/beta"


def test_remote_files_are_each_project_s_own_and_projects_without_one_are_left_out(
    checkout: Path,
) -> None:
    settings = load_settings(checkout)
    alpha = checkout.resolve() / "deploy" / "projects" / "alpha"
    assert remote_files(settings) == {"alpha": alpha / "prefect.yaml"}
    assert remote_files(settings, "prefect.k8s.yaml") == {"alpha": alpha / "prefect.k8s.yaml"}
    assert remote_files(settings, "prefect.nope.yaml") == {}


def test_a_missing_or_invalid_remote_file_is_named(checkout: Path) -> None:
    missing = checkout / "deploy" / "projects" / "beta" / "prefect.yaml"
    with pytest.raises(
        DeployError, match=rf"^{re.escape(str(missing))} is missing: nothing to deploy$"
    ):
        load_remote_file(missing)
    broken = checkout / "deploy" / "projects" / "alpha" / "prefect.yaml"
    broken.write_text(broken.read_text().replace("    schedules: []\n", "", 1))
    with pytest.raises(
        DeployError, match=rf"^{re.escape(str(broken))} is invalid, nothing was deployed:\n"
    ):
        load_remote_file(broken)


def test_prefect_yaml_uses_prefect_templating_and_the_pushed_digest(checkout: Path) -> None:
    path = checkout / "deploy" / "projects" / "alpha" / "prefect.yaml"
    raw = load_remote_file(path)
    text = path.read_text()
    assert "${" not in "".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert [next(iter(s)) for s in raw["build"]] == ["deploy_tools.remote.steps.build_image"]
    assert [next(iter(s)) for s in raw["push"]] == ["deploy_tools.remote.steps.push_image"]
    assert raw["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}
    ]
    for d in raw["deployments"]:
        jv = d["work_pool"]["job_variables"]
        assert d["work_pool"]["name"] == "airnub-docker"
        assert jv["image"] == "{{ push.image_ref }}"
        assert jv["image_pull_policy"] == "IfNotPresent"
        assert jv["volumes"] == ["airnub-alpha-data:/app/data"]
    assert yaml.safe_load(text) == raw


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: remote_steps.push_image("airnub-worker:x", ""), "set AIRNUB_REGISTRY"),
        (lambda: remote_steps.push_image("", "127.0.0.1:5000"), "build step's `image` output"),
        (lambda: remote_steps.push_image("  ", "127.0.0.1:5000"), "push_image: image is empty"),
    ],
)
def test_steps_refuse_what_an_unset_variable_makes_of_their_inputs(call, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(remote_steps.StepError, match=message):
        call()


def test_the_steps_return_what_deploy_remote_built_and_pushed_for_the_same_image(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = "sha256:" + "a" * 64
    build = {"image": "airnub-worker:done", "digest": digest, "built": "yes"}
    push = {"image": "127.0.0.1:5999/airnub-worker:done", "digest": digest,
            "image_ref": f"127.0.0.1:5999/airnub-worker@{digest}"}  # fmt: skip
    monkeypatch.setenv(remote_steps.DONE_ENV, json.dumps({"build": build, "push": push}))
    assert remote_steps.build_image("airnub-worker:done", project=str(checkout)) == build
    assert remote_steps.push_image("airnub-worker:done", "127.0.0.1:5999") == push
    assert capsys.readouterr().out.count("reusing") == 2  # nothing built, tagged or pushed


def test_an_s3_endpoint_is_set_only_when_given(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHA_S3_BUCKET", "b")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    settings = load_settings(checkout)

    def credentials() -> dict[str, object]:
        plan = load_plan(remote_setup_files(settings), base=settings.project_dir, target="remote")
        return next(b.data for b in plan.blocks if b.spec.name == "alpha-s3-credentials")

    assert "aws_client_parameters" not in credentials()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert credentials()["aws_client_parameters"] == {"endpoint_url": "http://127.0.0.1:9000"}
