"""Validation of deploy/ files: every problem named by file and key, before anything is applied.

The last tests run against a real Prefect server (the checkout's process stack without its
worker): a deployment's pool is checked before the first write, and a server killed mid-apply
leaves a report of what was applied, what failed and what was not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy_tools.local.service import apply_setup, setup_files
from deploy_tools.local.stack import Ports, ProcessStack
from deploy_tools.prefect_api import connection_failure, use_api
from deploy_tools.reporting import DeployError, ServerGoneError
from deploy_tools.settings import AirnubSettings, load_settings
from deploy_tools.setup import (
    Change,
    PartialApplyError,
    SetupFiles,
    SetupFilesError,
    SetupPlan,
    apply_plan,
    load_plan,
)

ENV = {"STACK_DEMO_DATA_URL": "http://127.0.0.1:8765/alpha"}


@pytest.fixture(autouse=True)
def _no_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ALPHA_S3_BUCKET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "ALPHA_SOURCE_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def deploy_dir(checkout: Path) -> Path:
    return checkout / "deploy"


@pytest.fixture
def alpha_dir(deploy_dir: Path) -> Path:
    return deploy_dir / "projects" / "alpha"


def groups(
    checkout: Path,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    extra: tuple[Path, ...] = (),
) -> tuple[AirnubSettings, list[SetupFiles]]:
    """What `setup apply` reads: the local stack's values (ports 4200/8765), `env` on top."""
    settings = load_settings(checkout)
    found = setup_files(settings, ProcessStack(settings, Ports(4200, 8765)), extra)
    return settings, [
        SetupFiles(
            g.folder,
            {k: v for k, v in {**g.env, **(env or {})}.items() if k not in drop},
            g.deployments,
        )
        for g in found
    ]


def plan_of(checkout: Path, env: dict[str, str] | None = None, **kw: object) -> SetupPlan:
    settings, found = groups(checkout, env, **kw)  # type: ignore[arg-type]
    return load_plan(found, base=settings.project_dir)


def problems(checkout: Path, env: dict[str, str] | None = None, **kw: object) -> list[str]:
    with pytest.raises(SetupFilesError) as info:
        plan_of(checkout, env, **kw)
    return info.value.problems


def test_the_fixture_files_are_valid(checkout: Path) -> None:
    plan = plan_of(checkout)
    assert [p.name for p in plan.work_pools] == ["local-process"]
    assert {d.spec.work_pool.name for d in plan.deployments} == {"local-process"}
    assert {d.flow.name for d in plan.deployments} == {
        "alpha_ingest",
        "alpha_process",
        "alpha_pipeline",
        "beta_flow",
    }
    assert all(d.spec.schedules == [] for d in plan.deployments)
    assert all(d.pull_steps for d in plan.deployments)
    skipped = {b.spec.name: b.skipped_because for b in plan.blocks}
    assert skipped["alpha-local-storage"] is None
    assert skipped["alpha-s3"] == "ALPHA_S3_BUCKET not set"
    assert skipped["alpha-source-token"] == "ALPHA_SOURCE_TOKEN not set"


def test_alpha_sources_file_matches_the_demo_dataset(checkout: Path) -> None:
    """The variable file lists exactly the files the stack serves (the fixture's demo_data)."""
    from airnub_fixture_alpha.demo_data import demo_data_dir, demo_sources

    plan = plan_of(checkout)
    (var,) = [v for v in plan.variables if v.name == "alpha_sources"]
    # each project's files are served under /<project>/ of the one demo-data server
    assert var.value == demo_sources(ENV["STACK_DEMO_DATA_URL"])
    for source in var.value:
        assert (demo_data_dir() / source["url"].rsplit("/", 1)[1]).is_file()


def test_invalid_variable_file_names_file_key_and_expectation(
    checkout: Path, alpha_dir: Path
) -> None:
    path = alpha_dir / "variables" / "alpha_sources.yaml"
    path.write_text(path.read_text().replace("format: csv", "format: xlsx", 1))
    (alpha_dir / "variables" / "bad.yaml").write_text("name: Bad-Name\ntags: nope\n")
    found = problems(checkout)
    text = "\n".join(found)
    assert "deploy/projects/alpha/variables/alpha_sources.yaml: value:" in text
    assert "[0][format]" in text
    assert "variables/bad.yaml: name: String should match pattern" in text
    assert "variables/bad.yaml: value: Field required" in text
    assert "variables/bad.yaml: tags: Input should be a valid list (got 'nope')" in text


def test_not_yaml_and_unknown_keys(checkout: Path, deploy_dir: Path, alpha_dir: Path) -> None:
    (alpha_dir / "variables" / "broken.yaml").write_text("name: [unclosed\n")
    (deploy_dir / "work_pools" / "typo.yaml").write_text("name: p\ntype: process\nconcurency: 2\n")
    text = "\n".join(problems(checkout))
    assert "variables/broken.yaml: not valid YAML" in text
    assert "work_pools/typo.yaml: concurency: Extra inputs are not permitted" in text


def test_missing_placeholder_names_the_variable(checkout: Path) -> None:
    text = "\n".join(problems(checkout, drop=("STACK_DEMO_DATA_URL",)))
    assert (
        "variables/alpha_sources.yaml: value[0].url: environment variable STACK_DEMO_DATA_URL"
        in text
    )


def test_files_use_prefect_templating_and_refuse_what_it_does_not_fill(
    checkout: Path, deploy_dir: Path, alpha_dir: Path
) -> None:
    """`{{ $NAME }}` only; a leftover `${NAME}`, an unquoted placeholder and a placeholder that
    setup apply cannot fill are problems naming their file and key; pull steps keep Prefect's
    other placeholders for the worker (as `prefect deploy` does)."""
    for path in [*deploy_dir.rglob("*.yaml"), *deploy_dir.rglob("*.yml")]:
        if path.name == "compose.yaml":  # docker compose's own file and syntax
            continue
        body = "".join(
            ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")
        )
        assert "${" not in body, path
    (alpha_dir / "variables" / "old.yaml").write_text("name: old\nvalue: '${STACK_DATA_ROOT}/x'\n")
    (alpha_dir / "variables" / "bare.yaml").write_text(
        "name: bare\nvalue: {{ $STACK_DATA_ROOT }}\n"
    )
    (alpha_dir / "variables" / "ref.yaml").write_text(
        "name: ref\nvalue: '{{ prefect.variables.alpha_sources }}'\n"
    )
    text = "\n".join(problems(checkout))
    assert (
        "variables/old.yaml: value: ${STACK_DATA_ROOT} is not substituted: write Prefect's "
        "{{ $NAME }} instead"
    ) in text
    assert "variables/bare.yaml: not valid YAML (a value holding {{ $NAME }} must be quoted" in text
    assert (
        "variables/ref.yaml: value: {{ prefect.variables.alpha_sources }}: setup apply resolves "
        "only environment variables here"
    ) in text


def test_pull_steps_keep_placeholders_the_worker_resolves(checkout: Path, alpha_dir: Path) -> None:
    path = alpha_dir / "prefect.local.yaml"
    path.write_text(
        path.read_text().replace(
            '      directory: "{{ $STACK_PROJECT_DIR }}"\n',
            '      id: cwd\n      directory: "{{ $STACK_PROJECT_DIR }}"\n'
            "  - prefect.deployments.steps.run_shell_script:\n"
            '      script: "echo {{ cwd.directory }} {{ prefect.blocks.secret.alpha-source-token }}"\n',
        )
    )
    plan = plan_of(checkout)
    root = str(checkout.resolve())
    assert plan.deployments[0].pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"id": "cwd", "directory": root}},
        {
            "prefect.deployments.steps.run_shell_script": {
                "script": "echo {{ cwd.directory }} {{ prefect.blocks.secret.alpha-source-token }}"
            }
        },
    ]


def test_block_defaults_are_in_data_and_optional_env_wins(checkout: Path) -> None:
    env = {"ALPHA_S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}

    def data(extra: dict[str, str], drop: tuple[str, ...] = ()) -> dict[str, object]:
        plan = plan_of(checkout, {**env, **extra}, drop=drop)
        creds, bucket = (
            next(b for b in plan.blocks if b.spec.name == n)
            for n in ("alpha-s3-credentials", "alpha-s3")
        )
        return {**creds.data, **bucket.data}

    defaults = data({}, drop=("AWS_REGION", "ALPHA_S3_FOLDER"))
    assert (defaults["region_name"], defaults["bucket_folder"]) == ("us-east-1", "alpha")
    chosen = data({"AWS_REGION": "eu-west-1", "ALPHA_S3_FOLDER": "f"})
    assert (chosen["region_name"], chosen["bucket_folder"]) == ("eu-west-1", "f")
    assert data({"AWS_REGION": ""})["region_name"] == "us-east-1"  # empty = unset, as `${X:-d}`


def test_missing_secret_env_names_it_and_never_shows_a_value(checkout: Path) -> None:
    env = {"ALPHA_S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "AKIA-SHOULD-NOT-SHOW"}
    text = "\n".join(problems(checkout, env))
    assert (
        "blocks/alpha-s3-credentials.yaml: secret_env.aws_secret_access_key: environment "
        "variable AWS_SECRET_ACCESS_KEY is not set"
    ) in text
    assert "AKIA-SHOULD-NOT-SHOW" not in text


def test_secret_blocks_resolve_from_env_when_enabled(checkout: Path) -> None:
    env = {"ALPHA_S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    plan = plan_of(checkout, env)
    names = [b.spec.name for b in plan.blocks]
    # a block is applied after the blocks it refers to
    assert names.index("alpha-s3-credentials") < names.index("alpha-s3")
    (creds,) = [b for b in plan.blocks if b.spec.name == "alpha-s3-credentials"]
    assert creds.data["aws_secret_access_key"] == "s"


def test_secret_in_data_and_unknown_block_field_are_rejected(
    checkout: Path, alpha_dir: Path
) -> None:
    (alpha_dir / "blocks" / "token.yaml").write_text(
        "type: secret\nname: token\ndata: {value: plain, colour: red}\nsecret_env: {value: TOKEN}\n"
    )
    text = "\n".join(problems(checkout, {"TOKEN": "t"}))
    assert "blocks/token.yaml: secret_env.value: also given in data" in text
    assert "blocks/token.yaml: colour: not a field of block type 'secret'" in text


def test_deployments_need_explicit_pull_and_schedules(checkout: Path, deploy_dir: Path) -> None:
    dep = (
        "{name: a, entrypoint: 'airnub_fixture_alpha.flows:alpha_ingest', "
        "work_pool: {name: local-process}"
    )
    (deploy_dir / "no-pull.yaml").write_text(f"deployments:\n  - {dep}, schedules: []}}\n")
    (deploy_dir / "no-schedules.yaml").write_text(f"pull: []\ndeployments:\n  - {dep}}}\n")
    assert problems(checkout, extra=(deploy_dir / "no-pull.yaml",)) == [
        "deploy/no-pull.yaml: deployments[0] (a).pull: missing; write `pull:` explicitly "
        "(otherwise Prefect records the deploying machine's folder)"
    ]
    assert problems(checkout, extra=(deploy_dir / "no-schedules.yaml",)) == [
        "deploy/no-schedules.yaml: deployments.0.schedules: Field required"
    ]


def test_broken_entrypoint_stops_the_plan(checkout: Path, alpha_dir: Path) -> None:
    path = alpha_dir / "prefect.local.yaml"
    path.write_text(path.read_text().replace("flows:alpha_process", "flows:nope"))
    text = "\n".join(problems(checkout))
    assert "deployments[1] (local).entrypoint: airnub_fixture_alpha.flows:nope" in text


def test_unknown_job_variable_of_a_pool(checkout: Path, deploy_dir: Path) -> None:
    (deploy_dir / "work_pools" / "local-process.yaml").write_text(
        "name: local-process\ntype: process\njob_variables: {imagez: x}\n"
    )
    text = "\n".join(problems(checkout))
    assert "work_pools/local-process.yaml: job_variables.imagez: not a process job variable" in text


def _add_gamma(checkout: Path, alpha_dir: Path) -> Path:
    """A third project: a member saying so and its own deploy folder, nothing else edited."""
    member = checkout / "packages" / "fixture_gamma"
    member.mkdir()
    (member / "pyproject.toml").write_text(
        '[project]\nname = "fixture-gamma"\n\n'
        '[tool.airnub.project]\nname = "gamma"\nflows_package = "airnub_fixture_alpha"\n'
        'env_prefix = "GAMMA_"\ndemo_data = "airnub_fixture_alpha.demo_data"\n'
    )
    gamma = checkout / "deploy" / "projects" / "gamma"
    (gamma / "variables").mkdir(parents=True)
    (gamma / "blocks").mkdir()
    (gamma / "variables" / "gamma_sources.yaml").write_text(
        "name: gamma_sources\nvalue: [{name: cities, url: '{{ $STACK_DEMO_DATA_URL }}/cities.csv'}]\n"
    )
    (gamma / "blocks" / "gamma-local-storage.yaml").write_text(
        "type: local-file-system\nname: gamma-local-storage\n"
        "data: {basepath: '{{ $STACK_DATA_ROOT }}'}\n"
    )
    (gamma / "prefect.local.yaml").write_text(
        (alpha_dir / "prefect.local.yaml").read_text().replace("name: local", "name: gamma-local")
    )
    return gamma


def test_another_project_gets_its_own_values(checkout: Path, alpha_dir: Path) -> None:
    _add_gamma(checkout, alpha_dir)
    plan = plan_of(checkout)
    values = {v.name: v.value for v in plan.variables}
    assert values["gamma_sources"][0]["url"] == "http://127.0.0.1:8765/gamma/cities.csv"
    assert values["alpha_sources"][0]["url"] == "http://127.0.0.1:8765/alpha/cities.csv"
    roots = {b.spec.name: b.data.get("basepath") for b in plan.blocks}
    assert roots["gamma-local-storage"] == str(checkout.resolve() / "data" / "gamma")
    assert roots["alpha-local-storage"] == str(
        checkout.resolve() / "data" / "project_alpha_outputs"
    )
    names = {f"{d.flow.name}/{d.spec.name}" for d in plan.deployments}
    assert {"alpha_pipeline/local", "alpha_pipeline/gamma-local", "beta_flow/local"} <= names
    assert [p.name for p in plan.work_pools] == ["local-process"]  # one pool for all


def test_a_project_without_a_data_root_gets_no_data_root_value(checkout: Path) -> None:
    """beta has no env_prefix: a file of its that asks for STACK_DATA_ROOT is refused by name."""
    blocks = checkout / "deploy" / "projects" / "beta" / "blocks"
    blocks.mkdir()
    (blocks / "beta-local-storage.yaml").write_text(
        "type: local-file-system\nname: beta-local-storage\n"
        "data: {basepath: '{{ $STACK_DATA_ROOT }}'}\n"
    )
    text = "\n".join(problems(checkout))
    assert (
        "deploy/projects/beta/blocks/beta-local-storage.yaml: data.basepath: environment "
        "variable STACK_DATA_ROOT"
    ) in text


def test_a_name_defined_by_two_projects_names_both_files(checkout: Path, alpha_dir: Path) -> None:
    gamma = _add_gamma(checkout, alpha_dir)
    (gamma / "variables" / "gamma_sources.yaml").write_text(
        (gamma / "variables" / "gamma_sources.yaml")
        .read_text()
        .replace("gamma_sources", "alpha_sources")
    )
    assert (
        "deploy/projects/gamma/variables/gamma_sources.yaml: variable 'alpha_sources' is already "
        "defined in deploy/projects/alpha/variables/alpha_sources.yaml"
    ) in problems(checkout)


def test_source_token_block_takes_its_value_from_env(checkout: Path) -> None:
    plan = plan_of(checkout, {"ALPHA_SOURCE_TOKEN": "t0k"})
    (token,) = [b for b in plan.blocks if b.spec.name == "alpha-source-token"]
    assert (token.spec.type, token.skipped_because, token.data) == (
        "secret",
        None,
        {"value": "t0k"},
    )


def test_url_with_userinfo_in_a_variable_is_refused_without_showing_it(
    checkout: Path, alpha_dir: Path
) -> None:
    path = alpha_dir / "variables" / "alpha_sources.yaml"
    path.write_text(
        path.read_text().replace(
            "{{ $STACK_DEMO_DATA_URL }}/stations", "https://me:pw-SECRET@h/s", 1
        )
    )
    (alpha_dir / "variables" / "other.yaml").write_text(
        "name: other\nvalue: {mirror: 'https://pw-SECRET@h/'}\n"
    )
    text = "\n".join(problems(checkout))
    # The generic check (any variable) and the sources' own validation both refuse it.
    assert "variables/alpha_sources.yaml: value[1].url: a URL with a user name or password" in text
    assert "sources[1]: Value error, source 'stations': the URL holds a user name" in text
    assert "variables/other.yaml: value.mirror: a URL with a user name or password" in text
    assert "pw-SECRET" not in text


def test_url_with_userinfo_in_deployment_parameters_is_refused(
    checkout: Path, alpha_dir: Path
) -> None:
    path = alpha_dir / "prefect.local.yaml"
    path.write_text(
        path.read_text().replace(
            "    tags: [alpha, local]\n",
            "    tags: [alpha, local]\n"
            "    parameters: {sources: [{name: a, url: 'https://u:pw-SECRET@h/a.csv'}]}\n",
            1,
        )
    )
    text = "\n".join(problems(checkout))
    assert (
        "prefect.local.yaml: deployments[0] (local).parameters.sources[0].url: "
        "a URL with a user name or password"
    ) in text
    assert "pw-SECRET" not in text


# -- against a real server: the plan is complete before the first write ----------------------
@dataclass
class Lines:
    """A `Reporter` keeping the failure and finished lines."""

    failures: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    def step_started(self, step: str, detail: str = "") -> None:
        pass

    def progress(self, step: str, detail: str) -> None:
        pass

    def step_finished(self, step: str, detail: str = "", *, ok: bool = True) -> None:
        self.finished.append(f"{step}: {detail}")

    def info(self, message: str) -> None:
        pass

    def failure(self, message: str) -> None:
        self.failures.append(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessStack]:
    """The checkout's process stack without its worker: a real Prefect server (fresh SQLite
    database under the checkout's `.local/`) and its demo-data server, on free ports."""
    srcs = [str(p) for p in sorted(checkout.glob("packages/*/src"))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(srcs))  # the demo-data server imports them
    for name in [k for k in os.environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(name)
    stack = ProcessStack(load_settings(checkout), Ports(_free_port(), _free_port()))
    try:
        stack.up(worker=False, timeout=120)
        yield stack
    finally:
        stack.down()


def _get(stack: ProcessStack, path: str) -> int:
    return httpx.get(f"{stack.api_url}{path}", timeout=10).status_code


def _kill_server(stack: ProcessStack) -> None:
    """SIGKILL the server's process group (as an OOM kill does) and wait until it is gone."""
    pid = stack.server.pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while stack.server.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.server.pid() is None


def test_a_pool_that_exists_nowhere_stops_the_apply_before_anything_is_written(
    checkout: Path, alpha_dir: Path, server: ProcessStack
) -> None:
    (alpha_dir / "variables" / "alpha_new.yaml").write_text("name: alpha_new\nvalue: 1\n")
    deployments = alpha_dir / "prefect.local.yaml"
    text = deployments.read_text()
    at = text.index("alpha_process")  # its deployment (the second) names a pool of nowhere
    deployments.write_text(text[:at] + text[at:].replace("{{ $STACK_POOL }}", "nowhere", 1))
    reporter = Lines()
    with pytest.raises(DeployError, match="setup apply stopped"):
        apply_setup(server.settings, server, reporter)
    assert reporter.finished == ["setup: nothing was applied:"]
    assert reporter.failures == [
        "  deploy/projects/alpha/prefect.local.yaml: deployments[1] (local).work_pool.name: "
        "work pool 'nowhere': no file under deploy/work_pools/ defines it and the server has "
        "none of that name (pools that exist: local-process)"
    ]
    assert _get(server, "/variables/name/alpha_new") == 404  # the new variable: not created
    assert _get(server, "/work_pools/local-process") == 404  # nor anything before it


def test_a_pool_only_the_server_has_is_accepted(
    checkout: Path, alpha_dir: Path, server: ProcessStack
) -> None:
    resp = httpx.post(f"{server.api_url}/work_pools/", json={"name": "made-by-hand",
                      "type": "process"}, timeout=10)  # fmt: skip
    assert resp.status_code == 201, resp.text
    deployments = alpha_dir / "prefect.local.yaml"
    deployments.write_text(deployments.read_text().replace("{{ $STACK_POOL }}", "made-by-hand", 1))
    changes = apply_setup(server.settings, server, Lines())
    assert ("deployment", "alpha_ingest/local", "created") in [
        (c.kind, c.name, c.action) for c in changes
    ]


def test_a_server_killed_mid_apply_lists_applied_failed_and_not_applied(
    checkout: Path, server: ProcessStack
) -> None:
    reporter = Lines()
    started = time.monotonic()
    with pytest.raises(ServerGoneError, match="stopped answering during setup apply"):
        # once the pools exist the server dies (where the local stack starts its worker)
        apply_setup(server.settings, server, reporter, after_pools=lambda: _kill_server(server))
    print(f"partial apply reported in {time.monotonic() - started:.1f} s")
    assert reporter.finished[0].startswith("setup: stopped at variable alpha_sources (")
    not_applied = [
        "    block local-file-system/alpha-local-storage",
        "    block secret/alpha-source-token",
        "    block s3-bucket/alpha-s3",
    ]
    failures = reporter.failures
    assert failures[:4] == [
        "  applied (1):",
        "    work pool local-process: created",
        "  failed: variable alpha_sources",
        f"  not applied ({len(failures) - 4}):",
    ]
    assert set(not_applied) <= set(failures[4:])
    assert {f"    deployment {f}/local" for f in ("alpha_ingest", "beta_flow")} <= set(failures)
    assert not any("listed before this line" in line for line in failures)


def test_a_failure_after_some_objects_lists_each_of_them(
    checkout: Path, server: ProcessStack
) -> None:
    settings = server.settings
    plan = load_plan(setup_files(settings, server), base=settings.project_dir)
    applied: list[Change] = []

    def kill_after_two(change: Change) -> None:
        applied.append(change)
        if len(applied) == 2:
            _kill_server(server)

    with use_api(server.api_url, retries=0), pytest.raises(PartialApplyError) as caught:
        asyncio.run(apply_plan(plan, after_each=kill_after_two))
    error = caught.value
    order = [f"work pool {p.name}" for p in plan.work_pools]
    order += [f"variable {v.name}" for v in plan.variables]
    order += [f"block {b.spec.type}/{b.spec.name}" for b in plan.blocks]
    order += [f"deployment {d.flow.name}/{d.spec.name}" for d in plan.deployments]
    assert [f"{c.kind} {c.name}" for c in error.applied] == order[:2]
    assert error.failed == order[2]
    assert error.not_applied == order[3:]
    assert connection_failure(error) is not None
