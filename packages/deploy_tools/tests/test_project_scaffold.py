"""`airnub new project` / `remove project` on a git copy of the fixture checkout: the templates
render valid files, a project is only its two folders (and uv.lock), refusals write nothing.

`uv lock` is a fake `uv` on the PATH where a test needs one (a real lock resolves from the
package index); every other test passes `lock=False`.
"""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy_tools.scaffold.create import (
    TEMPLATE_NAMES,
    NewProject,
    ScaffoldError,
    create_project,
    find_project,
    remove_project,
    render,
)
from deploy_tools.settings import load_settings

# This repository's lint rules, which scaffolded code must pass (only its [tool.ruff] is read).
REPO_PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"
LOCK = "# the fixture's lock\n"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def commit_all(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


@pytest.fixture
def repo(make_checkout: Callable[[str], Path]) -> Path:
    """The fixture checkout with a uv.lock, as a git repository with one commit."""
    root = make_checkout("repo")
    (root / "uv.lock").write_text(LOCK)
    git(root, "init", "-q")
    commit_all(root, "seed")
    return root


def state(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


def fake_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fail: bool) -> Path:
    """A `uv` first on the PATH that records its arguments and folder, rewrites uv.lock, and
    succeeds or fails (saying why); returns the file it records into."""
    bin_dir, record = tmp_path / "bin", tmp_path / "uv-calls.txt"
    bin_dir.mkdir()
    script = bin_dir / "uv"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, pathlib, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(os.getcwd() + ' ' + ' '.join(sys.argv[1:]) + '\\n')\n"
        "pathlib.Path('uv.lock').write_text('# rewritten by uv\\n')\n"
        + ("sys.exit('resolution failed: no such package')\n" if fail else "")
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


# -- rendering -----------------------------------------------------------------------------
@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_rendered_file_parses(template: str, tmp_path: Path) -> None:
    files = render(NewProject("sales_eu"), template)
    kinds = {path.suffix for path in files}
    assert {".py", ".toml", ".yaml"} <= kinds
    for path, body in files.items():
        assert "{{ name" not in str(path) and "{{ name" not in body  # nothing left unrendered
        if path.suffix == ".py":
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
            py_compile.compile(str(target), doraise=True)
        elif path.suffix == ".toml":
            tomllib.loads(body)
        elif path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(body), dict)
    meta = tomllib.loads(files[Path("packages/flows_sales_eu/pyproject.toml")])
    assert meta["project"]["name"] == "airnub-flows-sales-eu"
    assert meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/flows_sales_eu"]
    assert meta["tool"]["airnub"]["project"]["name"] == "sales_eu"


def test_the_pipeline_template_is_a_pipeline_project() -> None:
    files = render(NewProject("sales_eu"), "pipeline")
    table = tomllib.loads(files[Path("packages/flows_sales_eu/pyproject.toml")])["tool"]["airnub"]
    assert table["project"] == {
        "name": "sales_eu",
        "env_prefix": "SALES_EU_",
        "data_root": "data/project_sales_eu_outputs",
        "demo_deployment": "sales_eu_pipeline/local",
        "demo_data": "flows_sales_eu.demo_data",
    }
    flows = files[Path("packages/flows_sales_eu/src/flows_sales_eu/flows.py")]
    for name in ("sales_eu_ingest", "sales_eu_process", "sales_eu_pipeline"):
        assert f'@sources_flow("{name}")' in flows
    settings = files[Path("packages/flows_sales_eu/src/flows_sales_eu/settings.py")]
    assert "class SalesEuSettings(PipelineSettings)" in settings
    assert 'env_prefix="SALES_EU_"' in settings
    local = yaml.safe_load(files[Path("deploy/projects/sales_eu/prefect.local.yaml")])
    assert [d["entrypoint"] for d in local["deployments"]] == [
        "flows_sales_eu.flows:ingest",
        "flows_sales_eu.flows:process",
        "flows_sales_eu.flows:pipeline",
    ]
    assert Path("deploy/projects/sales_eu/variables/sales_eu_sources.yaml") in files


def test_the_flow_template_is_one_plain_flow() -> None:
    files = render(NewProject("sales_eu"), "flow")
    meta = tomllib.loads(files[Path("packages/flows_sales_eu/pyproject.toml")])
    assert meta["tool"]["airnub"]["project"] == {
        "name": "sales_eu",
        "demo_deployment": "sales_eu_flow/local",
    }  # no env_prefix, data_root or demo_data: no pipeline_core settings
    assert not any("pipeline-core" in d for d in meta["project"]["dependencies"])
    assert (
        '@flow(name="sales_eu_flow"'
        in files[Path("packages/flows_sales_eu/src/flows_sales_eu/flows.py")]
    )
    remote = yaml.safe_load(files[Path("deploy/projects/sales_eu/prefect.yaml")])
    assert [d["entrypoint"] for d in remote["deployments"]] == ["flows_sales_eu.flows:main"]
    assert remote["deployments"][0]["work_pool"]["job_variables"] == {
        "image": "{{ push.image_ref }}"
    }  # Prefect's own templating survives Jinja


def test_an_unknown_template_is_refused_and_nothing_written(repo: Path) -> None:
    before = state(repo)
    with pytest.raises(ScaffoldError, match=r"no template 'nope' \(known: pipeline, flow\)"):
        create_project(repo, "gamma", template="nope", lock=False)
    assert state(repo) == before


# -- create --------------------------------------------------------------------------------
@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_create_writes_only_the_two_folders_and_the_project_is_found(
    repo: Path, template: str
) -> None:
    before = state(repo)
    written = create_project(repo, "sales_eu", template=template, lock=False)
    after = state(repo)
    assert {k: v for k, v in after.items() if k in before} == before  # no file edited
    new = sorted(set(after) - set(before))
    assert new == sorted(p.as_posix() for p in written)
    assert all(p.startswith(("packages/flows_sales_eu/", "deploy/projects/sales_eu/")) for p in new)
    # the workspace finds it by its own table, beside the fixture's projects
    project = load_settings(repo).project("sales_eu")
    assert project.member_dir == repo / "packages" / "flows_sales_eu"
    assert project.distribution == "airnub-flows-sales-eu"
    assert project.flows_package == "flows_sales_eu"
    assert project.local_deploy_file.is_file() and project.remote_deploy_file.is_file()
    assert [p.name for p in load_settings(repo).projects] == ["alpha", "beta", "sales_eu"]


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_the_scaffold_passes_this_repos_lint(repo: Path, template: str) -> None:
    create_project(repo, "sales_eu", template=template, lock=False)
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    # First-party: the checkout's members (ruff resolves `src` against its config's folder)
    # and pipeline_core, a member of every real checkout (not of the fixture).
    src = f"src = [{str(repo / 'packages' / '*' / 'src')!r}]"
    first_party = "lint.isort.known-first-party = ['pipeline_core']"
    done = subprocess.run(
        [ruff, "check", "--no-cache", "--config", str(REPO_PYPROJECT), "--config", src,
         "--config", first_party, str(repo / "packages" / "flows_sales_eu")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["Beta", "1beta", "class", "be-ta", "", "b" * 40, "beta/../x"])
def test_an_invalid_name_is_refused_and_nothing_written(repo: Path, name: str) -> None:
    before = state(repo)
    with pytest.raises(ScaffoldError, match="invalid project name"):
        create_project(repo, name, lock=False)
    assert state(repo) == before


def test_a_taken_name_is_refused_naming_its_member(repo: Path) -> None:
    before = state(repo)
    with pytest.raises(
        ScaffoldError,
        match=r"a project named 'alpha' exists already \(packages/fixture_alpha/pyproject.toml\)",
    ):
        create_project(repo, "alpha", lock=False)
    assert state(repo) == before


@pytest.mark.parametrize("taken", ["packages/flows_gamma", "deploy/projects/gamma"])
def test_a_taken_folder_is_refused_naming_it(repo: Path, taken: str) -> None:
    (repo / taken).mkdir(parents=True)
    (repo / taken / "README.md").write_text("someone's\n")
    commit_all(repo, "a folder of that name")
    before = state(repo)
    with pytest.raises(ScaffoldError, match=rf"^{taken} exists already: choose another name$"):
        create_project(repo, "gamma", lock=False)
    assert state(repo) == before


def test_a_dirty_target_is_refused_naming_the_file(repo: Path) -> None:
    path = repo / "packages" / "fixture_beta" / "pyproject.toml"
    path.write_text(path.read_text() + "\n# edit\n")
    before = state(repo)
    with pytest.raises(
        ScaffoldError, match=r"uncommitted changes \(packages/fixture_beta/pyproject.toml\)"
    ):
        create_project(repo, "gamma", lock=False)
    assert state(repo) == before


def test_a_folder_that_is_no_git_checkout_is_refused(make_checkout: Callable[[str], Path]) -> None:
    root = make_checkout("plain")
    before = state(root)
    with pytest.raises(ScaffoldError, match="is not a git checkout"):
        create_project(root, "gamma", lock=False)
    assert state(root) == before


def test_create_runs_uv_lock_in_the_checkout(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_uv(tmp_path, monkeypatch, fail=False)
    written = create_project(repo, "gamma", template="flow")
    assert written[-1] == Path("uv.lock")
    assert calls.read_text() == f"{repo} lock\n"
    assert (repo / "uv.lock").read_text() == "# rewritten by uv\n"


def test_a_failed_lock_puts_everything_back(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_uv(tmp_path, monkeypatch, fail=True)
    before = state(repo)
    with pytest.raises(ScaffoldError, match=r"`uv lock` failed; nothing was changed:\nresolution"):
        create_project(repo, "gamma")
    assert state(repo) == before  # the folders gone, uv.lock as it was
    assert git(repo, "status", "--porcelain") == ""


def test_no_uv_is_refused_and_everything_put_back(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = state(repo)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(ScaffoldError, match="uv is not installed"):
        create_project(repo, "gamma")
    assert state(repo) == before


# -- remove --------------------------------------------------------------------------------
@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_remove_after_create_leaves_the_checkout_as_it_was(repo: Path, template: str) -> None:
    seed = git(repo, "rev-parse", "HEAD:").strip()  # the seed commit's tree
    before = state(repo)
    create_project(repo, "gamma", template=template, lock=False)
    commit_all(repo, "new project gamma")
    removed = remove_project(repo, "gamma", lock=False)
    assert removed == [Path("packages/flows_gamma"), Path("deploy/projects/gamma")]
    assert state(repo) == before
    commit_all(repo, "remove project gamma")
    assert git(repo, "rev-parse", "HEAD:").strip() == seed
    assert git(repo, "status", "--porcelain") == ""


def test_remove_deletes_a_fixture_project_s_two_folders_only(repo: Path) -> None:
    before = state(repo)
    assert remove_project(repo, "beta", lock=False) == [
        Path("packages/fixture_beta"),
        Path("deploy/projects/beta"),
    ]
    gone = set(before) - set(state(repo))
    assert gone and all(
        p.startswith(("packages/fixture_beta/", "deploy/projects/beta/")) for p in gone
    )
    assert [p.name for p in load_settings(repo).projects] == ["alpha"]


def test_remove_of_an_unknown_project_names_the_known_ones(repo: Path) -> None:
    with pytest.raises(
        ScaffoldError, match=r"no project 'gamma' in the workspace \(known: alpha, beta\)"
    ):
        find_project(repo, "gamma")
    with pytest.raises(ScaffoldError, match=r"no project 'gamma'"):
        remove_project(repo, "gamma", lock=False)


def test_remove_refuses_a_dirty_target_and_removes_nothing(repo: Path) -> None:
    (repo / "deploy" / "projects" / "beta" / "notes.txt").write_text("not committed\n")
    before = state(repo)
    with pytest.raises(
        ScaffoldError, match=r"uncommitted changes \(deploy/projects/beta/notes.txt\)"
    ):
        remove_project(repo, "beta", lock=False)
    assert state(repo) == before


def test_a_failed_lock_on_remove_puts_everything_back(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_uv(tmp_path, monkeypatch, fail=True)
    before = state(repo)
    with pytest.raises(ScaffoldError, match=r"`uv lock` failed; nothing was changed"):
        remove_project(repo, "beta")
    assert state(repo) == before
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("deploy_dir", ["deploy", "deploy/projects", "packages"])
def test_remove_refuses_a_folder_holding_what_is_not_the_project_s(
    repo: Path, deploy_dir: str
) -> None:
    path = repo / "packages" / "fixture_beta" / "pyproject.toml"
    path.write_text(path.read_text() + f'deploy_dir = "{deploy_dir}"\n')
    commit_all(repo, "beta's deploy folder is a shared one")
    before = state(repo)
    with pytest.raises(
        ScaffoldError, match=rf"^{deploy_dir} holds .*, not project beta's: nothing"
    ):
        remove_project(repo, "beta", lock=False)
    assert state(repo) == before
