"""The Debian packages of the worker image: the lock, the mirrors read from apt's sources,
and every fetched .deb checked against its pinned SHA-256 (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from deploy_tools.image import debs


def test_the_lock_pins_git_and_its_dependencies() -> None:
    locked = debs.read_lock()
    names = {d.name for d in locked}
    assert {"git", "libcurl3-gnutls"} <= names
    assert debs.requested() == ["git"]
    for d in locked:
        assert d.path.startswith("pool/") and d.path.endswith(f"_{d.arch}.deb"), d
    subprocess.run(["sh", "-n", str(debs.INSTALLER)], check=True)


def test_mirrors_come_from_the_environment_or_apt_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert debs.mirrors({debs.MIRRORS_ENV: "http://a/debian http://b/x/"}) == [
        "http://a/debian",
        "http://b/x/",
    ]
    (tmp_path / "main.sources").write_text(
        "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm\n\n"
        "Types: deb-src\nURIs: http://src.invalid/debian\n\n"
        "Types: deb\nURIs: http://off.invalid/x\nEnabled: no\n\n"
        "Types: deb\nURIs: http://m.invalid/debian-security/\n"
    )
    (tmp_path / "extra.list").write_text("deb [arch=amd64] http://l.invalid/d bookworm main\n")
    monkeypatch.setattr(debs, "SOURCES_DIR", tmp_path)
    monkeypatch.setattr(debs, "SOURCES_LIST", tmp_path / "none")
    assert debs.mirrors({}) == [
        "http://m.invalid/debian",
        "http://m.invalid/debian-security",
        "http://l.invalid/d",
    ]


def test_the_base_image_s_own_mirror_comes_after_the_host_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "host.list").write_text("deb http://host.invalid/debian bookworm main\n")
    monkeypatch.setattr(debs, "SOURCES_DIR", tmp_path)
    monkeypatch.setattr(debs, "SOURCES_LIST", tmp_path / "none")
    seen: list[str] = []

    def image_sources(image: str) -> str:
        seen.append(image)
        return "Types: deb\nURIs: http://base.invalid/debian\n"

    monkeypatch.setattr(debs, "image_sources", image_sources)
    found = debs.mirrors({}, base_image="some/base:tag")
    assert found == ["http://host.invalid/debian", "http://base.invalid/debian"]
    assert seen == ["some/base:tag"]


def test_fetch_checks_each_file_and_tries_the_next_mirror(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"not really a deb"
    deb = debs.Deb(
        "p", "1.0", "amd64", hashlib.sha256(body).hexdigest(), "pool/main/p/p_1.0_amd64.deb"
    )
    httpserver.expect_request("/bad/pool/main/p/p_1.0_amd64.deb").respond_with_data(b"tampered")
    httpserver.expect_request("/good/pool/main/p/p_1.0_amd64.deb").respond_with_data(body)
    mirrors = f"{httpserver.url_for('/missing')} {httpserver.url_for('/bad')} {httpserver.url_for('/good')}"
    monkeypatch.setenv(debs.MIRRORS_ENV, mirrors)
    (out,) = debs.fetch([deb], tmp_path / "cache", tmp_path / "ctx")
    assert out.read_bytes() == body
    # from the cache now: no mirror is asked
    monkeypatch.setenv(debs.MIRRORS_ENV, httpserver.url_for("/bad"))
    (again,) = debs.fetch([deb], tmp_path / "cache", tmp_path / "ctx2")
    assert again.read_bytes() == body
    (tmp_path / "cache" / deb.file_name).write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match=r"cannot fetch p_1\.0_amd64\.deb .*SHA-256 differs"):
        debs.fetch([deb], tmp_path / "cache", tmp_path / "ctx3")
    assert not (tmp_path / "cache" / deb.file_name).exists()


# ---- git is opt-in: a build step's `with_git`, required by a git_clone pull step ----

ROOT = Path(__file__).resolve().parents[3]
CLONE = {"prefect.deployments.steps.git_clone": {"repository": "https://h/r.git"}}


def _doc(build_args: dict[str, object], pull: list[dict[str, object]]) -> dict[str, object]:
    build = [{"deploy_tools.remote.steps.build_image": {"id": "build", **build_args}}]
    return {"build": build, "pull": pull, "deployments": [{"name": "d"}]}


def test_a_git_clone_pull_step_needs_with_git_on_the_build_step() -> None:
    from deploy_tools.remote.steps import git_problems, wants_git

    without = _doc({}, [CLONE])
    assert not wants_git(without)
    assert git_problems(without, "f.yaml") == [
        "f.yaml: pull[0].prefect.deployments.steps.git_clone runs git in the image, but build has "
        "no deploy_tools.remote.steps.build_image with `with_git: true` (deployment d): add it"
    ]
    with_git = _doc({"with_git": True}, [CLONE])
    assert wants_git(with_git) and git_problems(with_git, "f.yaml") == []
    # the other spelling of Prefect's step, in a deployment's own pull steps
    other = {**_doc({}, []), "deployments": [
        {"name": "d", "pull": [{"prefect.deployments.steps.pull.git_clone": {}}]}]}  # fmt: skip
    assert git_problems(other, "f.yaml")[0].startswith("f.yaml: deployments[0].pull[0].")
    # no git_clone: no git asked, none needed
    plain = _doc({}, [{"prefect.deployments.steps.set_working_directory": {"directory": "/x"}}])
    assert not wants_git(plain) and git_problems(plain, "f.yaml") == []


def test_every_deploy_file_asks_for_git_exactly_when_it_clones() -> None:
    import yaml

    from deploy_tools.remote.steps import git_problems, wants_git

    files = sorted((ROOT / "deploy" / "projects").glob("*/prefect*.yaml"))
    assert files
    for path in files:
        doc = yaml.safe_load(path.read_text())
        assert git_problems(doc, path.name) == []
        clones = "git_clone" in path.read_text()
        assert wants_git(doc) == clones, path


def test_only_the_os_git_stage_mounts_the_debs() -> None:
    """A default build (OS_STAGE=os) never reaches the stage that needs .deb files: BuildKit
    builds only the stages the target depends on."""
    text = (ROOT / "Dockerfile.worker").read_text()
    stages = text.split("\nFROM ")
    assert "ARG OS_STAGE=os\n" in stages[0]
    with_debs = [s for s in stages if "source=debs" in s]
    assert len(with_debs) == 1 and with_debs[0].startswith("os AS os-git\n")
    assert [s.split("\n", 1)[0] for s in stages[1:]] == [
        "${BASE_IMAGE} AS deps", "${BASE_IMAGE} AS os", "os AS os-git", "${OS_STAGE}"]  # fmt: skip


def test_a_default_context_has_no_debs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy_tools.image import build, wheelhouse

    fetched: list[Path] = []
    monkeypatch.setattr(wheelhouse, "export_lock", lambda project: "")
    monkeypatch.setattr(wheelhouse, "fetch", lambda *a: None)
    monkeypatch.setattr(wheelhouse, "build_workspace_wheels", lambda *a: None)
    monkeypatch.setattr(debs, "fetch", lambda lock, cache, dest, base: fetched.append(dest))
    target = wheelhouse.Target(markers={}, glibc="2.36")  # no requirement to select
    build.assemble_context(ROOT, tmp_path / "a", target, tmp_path / "w", 1_000_000)
    assert fetched == [] and not (tmp_path / "a" / "debs").exists()
    assert not (tmp_path / "a" / "install-debs.sh").exists()
    build.assemble_context(ROOT, tmp_path / "b", target, tmp_path / "w", 1_000_000, with_git=True)
    assert fetched == [tmp_path / "b" / "debs"] and (tmp_path / "b" / "install-debs.sh").is_file()


def test_a_git_build_step_reuses_only_a_git_build_of_airnub(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under `airnub deploy remote` (STACK_STEPS_DONE): one image for every file, with git when
    a file asked; a step asking for git never gets a git-less image."""
    import json

    from deploy_tools.remote import steps

    build = {"image": "airnub-worker:done", "digest": "sha256:" + "a" * 64, "built": "yes",
             "os_packages": ""}  # fmt: skip
    steps.build_image.cache_clear()
    try:
        monkeypatch.setenv(steps.DONE_ENV, json.dumps({"build": build, "push": {}}))
        assert steps.build_image("airnub-worker:done", project=str(ROOT)) == build
        with pytest.raises(steps.StepError, match="without git; this step asks `with_git: true`"):
            steps.build_image("airnub-worker:done", project=str(ROOT), with_git=True)
        with_git = {**build, "os_packages": "git"}
        monkeypatch.setenv(steps.DONE_ENV, json.dumps({"build": with_git, "push": {}}))
        steps.build_image.cache_clear()
        assert steps.build_image("airnub-worker:done", project=str(ROOT), with_git=True) == with_git
        assert steps.build_image("airnub-worker:done", project=str(ROOT)) == with_git
    finally:
        steps.build_image.cache_clear()
