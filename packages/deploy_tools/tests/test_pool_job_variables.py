"""Job variables must fit their pool's base job template: a pool file's (its defaults) and a
deployment's (its overrides), for `setup apply` and `deploy remote`. Each bad value is one
problem naming the file and the key; nothing is applied (the plan raises before any write).

The Docker pool is this repository's own deploy/work_pools/airnub-docker.yaml (its resource
limits), copied into the fixture checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deploy_tools.local.service import setup_files
from deploy_tools.local.stack import Ports, ProcessStack
from deploy_tools.remote.service import RemoteTarget, _validate, remote_files, remote_setup_files
from deploy_tools.reporting import DeployError
from deploy_tools.settings import load_settings
from deploy_tools.setup import SetupFilesError, load_plan
from deploy_tools.setup.pools import base_job_template

if TYPE_CHECKING:
    from conftest import RecordingReporter

REPO_POOL = Path(__file__).parents[3] / "deploy" / "work_pools" / "airnub-docker.yaml"
DOCKER = "deploy/work_pools/airnub-docker.yaml"
K8S = "deploy/work_pools/airnub-kubernetes.yaml"


@pytest.fixture
def repo_pool(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The checkout with this repository's Docker pool file; the remote's demo-data URL set."""
    monkeypatch.setenv("AIRNUB_DEMO_DATA_URL", "https://files.example.com")
    monkeypatch.delenv("ALPHA_STORAGE_BLOCK", raising=False)
    shutil.copy(REPO_POOL, checkout / DOCKER)
    return checkout


def remote_problems(checkout: Path) -> list[str]:
    """What `setup apply` of the remote's files (as `deploy remote` reads them) reports."""
    settings = load_settings(checkout)
    with pytest.raises(SetupFilesError) as info:
        load_plan(remote_setup_files(settings), base=checkout, target="remote")
    return info.value.problems


def local_problems(checkout: Path) -> list[str]:
    """What `setup apply` of the local stack's files reports."""
    settings = load_settings(checkout)
    found = setup_files(settings, ProcessStack(settings, Ports(4200, 8765)), ())
    with pytest.raises(SetupFilesError) as info:
        load_plan(found, base=checkout)
    return info.value.problems


def with_job_variable(path: Path, line: str) -> None:
    """`line` (`key: value`, YAML) appended under the file's `job_variables:`."""
    text = path.read_text()
    assert "job_variables:\n" in text, path
    path.write_text(text.replace("job_variables:\n", f"job_variables:\n  {line}\n", 1))


def test_the_docker_pool_limits_flow_runs_by_default(repo_pool: Path) -> None:
    settings = load_settings(repo_pool)
    plan = load_plan(remote_setup_files(settings), base=repo_pool, target="remote")
    (pool,) = [p for p in plan.work_pools if p.type == "docker"]
    defaults = {
        k: v.get("default") for k, v in base_job_template(pool)["variables"]["properties"].items()
    }
    assert defaults["mem_limit"] == "2g"
    assert defaults["memswap_limit"] == "2g"  # no swap
    assert defaults["container_create_kwargs"] == {"cpu_period": 100000, "cpu_quota": 200000}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("mem_limitz: 2g", "job_variables.mem_limitz: not a docker job variable (expected one of: "),
        ("auto_remove: 'yes'", "job_variables.auto_remove: expected true or false, got 'yes'"),
        ("mem_limit: 2", "job_variables.mem_limit: expected a string or null, got 2"),
        ("mem_limit: 2 GB", "job_variables.mem_limit: '2 GB' is not a size: digits and b, k, m "
                            "or g (e.g. 512m, 2g)"),
        ("mem_limit: 1m", "job_variables.mem_limit: '1m' is less than Docker's minimum, 6m"),
        ("mem_limit: null", "job_variables.memswap_limit: '2g' without mem_limit; Docker "
                            "refuses it"),
        ("volumes: /data:/app/data", "job_variables.volumes: expected a list of strings or null, "
                                     "got '/data:/app/data'"),
        ("image_pull_policy: Sometimes", "job_variables.image_pull_policy: expected one of "
         "'IfNotPresent', 'Always', 'IfPossible', 'Never' or null, got 'Sometimes'"),
    ],
)  # fmt: skip
def test_a_docker_pool_value_that_does_not_fit_is_named(
    repo_pool: Path, line: str, problem: str
) -> None:
    # appended first: a key given twice in YAML keeps the last, the file's own
    text = (repo_pool / DOCKER).read_text()
    key = line.split(":")[0]
    (repo_pool / DOCKER).write_text("\n".join(
        ln for ln in text.splitlines() if not ln.startswith(f"  {key}:")) + "\n")  # fmt: skip
    with_job_variable(repo_pool / DOCKER, line)
    (found,) = remote_problems(repo_pool)
    assert found.startswith(f"{DOCKER}: {problem}"), found


def test_swap_below_memory_and_bad_cpu_arguments_are_named(repo_pool: Path) -> None:
    path = repo_pool / DOCKER
    text = path.read_text().replace("memswap_limit: 2g", "memswap_limit: 1g")
    path.write_text(text.replace("cpu_quota: 200000", "cpu_quota: '2'\n    cpu_qouta: 1"))
    assert remote_problems(repo_pool) == [
        f"{DOCKER}: job_variables.memswap_limit: '1g' is less than mem_limit '2g'; Docker "
        "refuses it (memswap_limit is memory plus swap: equal means no swap)",
        f"{DOCKER}: job_variables.container_create_kwargs.cpu_qouta: not an argument of "
        "docker-py's containers.create",
        f"{DOCKER}: job_variables.container_create_kwargs.cpu_quota: '2' is not an integer",
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("memory_limit: 1 GB", "job_variables.memory_limit: '1 GB' is not a Kubernetes quantity "
                               "(e.g. 250m, 1, 512Mi, 1Gi)"),
        ("backoff_limit: twice", "job_variables.backoff_limit: expected an integer, got 'twice'"),
        ("cpu_limit: 1", "job_variables.cpu_limit: expected a string or null, got 1"),
    ],
)  # fmt: skip
def test_a_kubernetes_pool_value_that_does_not_fit_is_named(
    repo_pool: Path, line: str, problem: str
) -> None:
    with_job_variable(repo_pool / K8S, line)
    assert remote_problems(repo_pool) == [f"{K8S}: {problem}"]


def test_a_local_deployment_override_is_checked_against_its_pool(checkout: Path) -> None:
    path = checkout / "deploy" / "projects" / "alpha" / "prefect.local.yaml"
    text = path.read_text()
    pool = 'work_pool: {name: "{{ $STACK_POOL }}"}'
    bad = 'work_pool: {name: "{{ $STACK_POOL }}", job_variables: {working_dir: 3, image: x}}'
    path.write_text(text.replace(pool, bad, 1))
    where = "deploy/projects/alpha/prefect.local.yaml: deployments[0] (local).work_pool"
    problems = local_problems(checkout)
    assert problems[0].startswith(f"{where}.job_variables.image: not a process job variable")
    assert problems[1:] == [f"{where}.job_variables.working_dir: expected a string or null, got 3"]
    # a value that fits is taken
    path.write_text(text.replace(pool, pool[:-1] + ", job_variables: {working_dir: /tmp}}", 1))
    settings = load_settings(checkout)
    plan = load_plan(setup_files(settings, ProcessStack(settings, Ports(4200, 8765)), ()),
                     base=checkout)  # fmt: skip
    assert plan.deployments[0].spec.work_pool.job_variables == {"working_dir": "/tmp"}


def validate_remote(checkout: Path, reporter: RecordingReporter) -> None:
    """`deploy remote`'s validation of the files (before any build), into `reporter`."""
    settings = load_settings(checkout)
    target = RemoteTarget("http://127.0.0.1:1/api", "127.0.0.1:1", "airnub-worker:test")
    _validate(settings, reporter, target, remote_files(settings))


def test_deploy_remote_checks_each_deployment_against_its_pool_defaults(
    repo_pool: Path, reporter: RecordingReporter
) -> None:
    path = repo_pool / "deploy" / "projects" / "alpha" / "prefect.yaml"
    good = path.read_text()
    # more memory than the pool's memswap_limit (2g): Docker would refuse each run
    path.write_text(good.replace("image_pull_policy: IfNotPresent",
                                 "image_pull_policy: IfNotPresent\n        mem_limit: 4g\n"
                                 "        container_create_kwargs: {nano_cpus: 1.5}"))  # fmt: skip
    with pytest.raises(DeployError, match="deploy remote stopped before building"):
        validate_remote(repo_pool, reporter)
    where = "deploy/projects/alpha/prefect.yaml: deployments[0] (docker).work_pool.job_variables"
    failures = reporter.of("failure")
    assert failures[:2] == [
        f"  {where}.memswap_limit: '2g' is less than mem_limit '4g'; Docker refuses it "
        "(memswap_limit is memory plus swap: equal means no swap)",
        f"  {where}.container_create_kwargs.nano_cpus: 1.5 is not an integer",
    ]
    assert len(failures) == 6  # the three deployments share the anchor `*pool`
    # memory and swap raised together fit; a `{{ … }}` placeholder is left to Prefect
    path.write_text(good.replace("image_pull_policy: IfNotPresent",
                                 "image_pull_policy: IfNotPresent\n        mem_limit: 4g\n"
                                 "        memswap_limit: 4g"))  # fmt: skip
    fits = type(reporter)()
    validate_remote(repo_pool, fits)
    assert fits.of("failure") == []
    assert fits.of("finished")[0].startswith("files: 2 pool(s), ")
