"""A Git repository URL with a token in it is refused like a source URL: in `setup apply`'s
deployment files and in `deploy remote`'s prefect.yaml (as `prefect deploy` would store it,
after `{{ $NAME }}`), naming the file and the key, never the URL; nothing is deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy_tools.local.service import setup_files
from deploy_tools.local.stack import Ports, ProcessStack
from deploy_tools.remote.service import RemoteTarget, _validate, remote_files
from deploy_tools.reporting import DeployError
from deploy_tools.settings import load_settings
from deploy_tools.setup import SetupFilesError, load_plan
from deploy_tools.setup.plan import pull_userinfo_problems
from deploy_tools.setup.templating import render

SECRET = "ghp-SECRET-0123"


def git_clone(repository: str) -> str:
    return (
        "  - prefect.deployments.steps.git_clone:\n"
        f'      repository: "{repository}"\n'
        '      access_token: "{{ prefect.blocks.secret.alpha-git-token }}"\n'
    )


def test_a_repository_url_with_a_token_is_refused_and_a_clean_one_is_not() -> None:
    doc = {
        "pull": [
            {"prefect.deployments.steps.git_clone": {"repository": f"https://x:{SECRET}@h/r.git"}}
        ],
        "deployments": [
            {"name": "a", "pull": [{"git_clone": {"repository": f"https://{SECRET}@h/r.git"}}]},
            {"name": "b", "pull": [{"git_clone": {"repository": "https://h/r.git"}}]},
            {"name": "c", "pull": [{"git_clone": {"repository": "git@h:org/r.git"}}]},  # ssh
        ],
    }
    found = pull_userinfo_problems(doc, "f.yaml")
    assert found == [
        "f.yaml: pull[0].prefect.deployments.steps.git_clone.repository: a URL with a user name "
        "or password; keep credentials in a Secret block (deploy/projects/<name>/blocks/) and "
        "pass it as the step's `access_token` or `credentials` ({{ prefect.blocks.… }})",
        found[1],
    ]
    assert found[1].startswith("f.yaml: deployments[0] (a).pull[0].git_clone.repository: a URL")
    assert SECRET not in "\n".join(found)


def test_setup_apply_refuses_a_token_in_a_pull_step_s_url(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = checkout / "deploy" / "projects" / "alpha" / "prefect.local.yaml"
    text = path.read_text()
    assert "\npull:\n" in text
    monkeypatch.setenv("GIT_URL", f"https://oauth2:{SECRET}@git.example.com/org/repo.git")
    path.write_text(text.replace("\npull:\n", "\npull:\n" + git_clone("{{ $GIT_URL }}"), 1))
    settings = load_settings(checkout)
    found = setup_files(settings, ProcessStack(settings, Ports(4200, 8765)))
    with pytest.raises(SetupFilesError) as info:
        load_plan(found, base=settings.project_dir)
    text = "\n".join(info.value.problems)
    assert (
        "deploy/projects/alpha/prefect.local.yaml: pull[0].prefect.deployments.steps.git_clone"
        ".repository: a URL with a user name or password"
    ) in text
    assert SECRET not in text


def test_deploy_remote_refuses_it_before_building(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, reporter: Any
) -> None:
    path = checkout / "deploy" / "projects" / "alpha" / "prefect.yaml"
    text = path.read_text()
    assert "\npull:\n" in text
    text = text.replace("\npull:\n", "\npull:\n" + git_clone("{{ $GIT_URL }}"), 1)
    tag = '      tag: "{{ $AIRNUB_IMAGE }}"\n'
    assert tag in text
    path.write_text(text.replace(tag, tag + "      with_git: true\n", 1))  # git in the image
    monkeypatch.setenv("AIRNUB_DEMO_DATA_URL", "https://files.example.com")
    settings = load_settings(checkout)
    target = RemoteTarget("http://127.0.0.1:9/api", "127.0.0.1:9", "airnub-worker:never-built")
    files = remote_files(settings)
    monkeypatch.setenv("GIT_URL", "https://git.example.com/org/repo.git")
    _validate(settings, reporter, target, files)  # a clean URL passes
    monkeypatch.setenv("GIT_URL", f"https://{SECRET}@git.example.com/org/repo.git")
    reporter.calls.clear()
    with pytest.raises(DeployError, match="stopped before building"):
        _validate(settings, reporter, target, files)
    shown = "\n".join(text for _, text in reporter.calls)
    assert (
        "deploy/projects/alpha/prefect.yaml: pull[0].prefect.deployments.steps.git_clone"
        ".repository: a URL with a user name or password"
    ) in shown
    assert SECRET not in shown


def test_other_placeholders_are_kept_while_checking() -> None:
    doc = render({"pull": [{"s": {"a": "{{ prefect.blocks.secret.t }}"}}]}, {})
    assert doc == {"pull": [{"s": {"a": "{{ prefect.blocks.secret.t }}"}}]}
    assert pull_userinfo_problems(doc, "f.yaml") == []
