"""`airnub deploy remote` against a stand-in remote on this machine: a basic-auth Prefect
server, a registry on 127.0.0.1 and a prefect-docker worker. The failures come first (the
server is still empty: each must leave it so), then the deploy, a run in a container of the
pushed digest, and plain `prefect deploy` of the same file.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import pytest

from tests.remote.conftest import BIN, S3, VOLUME, Copy, Registry, Remote
from tests.stack.test_local_stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.stack]


def nothing_deployed(remote: Remote) -> None:
    assert remote.deployments() == []


# -- every failure stops before anything is deployed --------------------------------------
def test_a_missing_api_url_is_refused(checkout: Copy, remote: Remote) -> None:
    done = checkout.airnub("deploy", "remote", PREFECT_API_URL="")
    assert done.returncode == 2
    assert "PREFECT_API_URL is not set" in done.stderr
    nothing_deployed(remote)


def test_an_unreachable_api_is_refused(checkout: Copy, remote: Remote) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    done = checkout.airnub("deploy", "remote", PREFECT_API_URL=url)
    assert done.returncode == 1
    assert f"no Prefect API answers at {url}" in done.stderr
    nothing_deployed(remote)


@pytest.mark.parametrize("auth", ["", "airnub:wrong"])
def test_a_missing_or_wrong_auth_string_is_refused(
    checkout: Copy, remote: Remote, auth: str
) -> None:
    done = checkout.airnub("deploy", "remote", PREFECT_API_AUTH_STRING=auth)
    assert done.returncode == 1
    assert "refused the credentials (401)" in done.stderr
    assert remote.auth.split(":")[1] not in done.stdout + done.stderr
    nothing_deployed(remote)


def test_an_invalid_file_is_refused(checkout: Copy, remote: Remote) -> None:
    pool = checkout.root / "deploy" / "work_pools" / "airnub-docker.yaml"
    good = pool.read_text()
    pool.write_text(good + "  no_such_variable: 1\n")
    try:
        done = checkout.airnub("deploy", "remote")
    finally:
        pool.write_text(good)
    assert done.returncode == 1
    assert "deploy/work_pools/airnub-docker.yaml: job_variables.no_such_variable" in done.stderr
    nothing_deployed(remote)


def test_a_failed_build_is_refused(checkout: Copy, remote: Remote) -> None:
    done = checkout.airnub("deploy", "remote", AIRNUB_IMAGE="airnub-worker:remote-never",
                           AIRNUB_BASE_IMAGE="airnub/no-such-base:1")  # fmt: skip
    assert done.returncode == 1
    assert "the worker image did not build" in done.stderr
    assert "airnub/no-such-base:1" in done.stderr
    nothing_deployed(remote)


def test_a_failed_push_is_refused(checkout: Copy, remote: Remote) -> None:
    port = free_port()  # no registry answers there
    done = checkout.airnub("deploy", "remote", AIRNUB_REGISTRY=f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert "image: up to date" in done.stdout or "image: built" in done.stdout
    assert "push: failed, nothing was deployed" in done.stderr
    assert f"`docker push 127.0.0.1:{port}/airnub-worker:remote-test` failed" in done.stderr
    assert "connection refused" in done.stderr
    nothing_deployed(remote)


def test_dry_run_prints_the_plan_and_touches_nothing(checkout: Copy, remote: Remote) -> None:
    done = checkout.airnub("deploy", "remote", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "would apply work pool airnub-docker (docker)" in done.stdout
    assert "would deploy alpha: flows_alpha.pipeline:alpha_pipeline (docker)" in done.stdout
    assert "local-process" not in done.stdout  # a local-only pool
    nothing_deployed(remote)
    assert remote.api("POST", "/work_pools/filter", {}) == []


# -- the deploy and a run -------------------------------------------------------------------
def test_every_deployment_names_the_pushed_digest(deployed: str, remote: Remote) -> None:
    deps = [d for d in remote.api("POST", "/deployments/filter", {}) if d["name"] == "docker"]
    assert sorted(d["entrypoint"] for d in deps) == [
        "flows_alpha.ingest:ingest",
        "flows_alpha.pipeline:alpha_pipeline",
        "flows_alpha.process:process",
    ]
    for d in deps:
        assert d["job_variables"]["image"] == deployed
        assert d["job_variables"]["image_pull_policy"] == "IfNotPresent"
        assert d["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}
        ]
        assert d["work_pool_name"] == "airnub-docker"
        assert remote.auth.split(":")[1] not in json.dumps(d)
    pools = {p["name"]: p["type"] for p in remote.api("POST", "/work_pools/filter", {})}
    assert pools == {"airnub-docker": "docker", "airnub-kubernetes": "kubernetes"}


def test_alpha_pipeline_completes_in_a_container_of_the_pushed_digest(
    deployed: str, docker_worker: None, remote: Remote, checkout: Copy
) -> None:
    dep = remote.api("GET", "/deployments/name/alpha_pipeline/docker")
    run = remote.api("POST", f"/deployments/{dep['id']}/create_flow_run",
                     {"job_variables": {"auto_remove": False}})  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = remote.api("GET", f"/flow_runs/{run['id']}")["state"]
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(2)
    assert state["type"] == "COMPLETED", state
    ids = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=io.prefect.flow-run-id={run['id']}"],
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert len(ids) == 1
    try:
        info = json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True,
                                         text=True, check=True).stdout)[0]  # fmt: skip
        assert info["Image"] == deployed.split("@", 1)[1]  # the manifest digest
        assert info["Config"]["Image"] == deployed
        assert info["Config"]["User"] == "10001:10001"
    finally:
        subprocess.run(["docker", "rm", "-f", ids[0]], capture_output=True)
    listing = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{VOLUME}:/app/data", deployed,
         "ls", "/app/data/project_alpha_demo_outputs/manifests", "/app/data/project_alpha_demo_outputs/processed"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "latest.json" in listing and "summary.json" in listing


def test_plain_prefect_deploy_creates_the_same_deployments(
    deployed: str, checkout: Copy, remote: Remote, registry: Registry
) -> None:
    def shape() -> list[tuple[str, str, str, str]]:
        return sorted(
            (d["entrypoint"], d["work_pool_name"], json.dumps(d["job_variables"], sort_keys=True),
             json.dumps(d["pull_steps"], sort_keys=True))
            for d in remote.api("POST", "/deployments/filter", {}) if d["name"] == "docker"
        )  # fmt: skip

    before = shape()
    for d in remote.api("POST", "/deployments/filter", {}):
        if d["name"] == "docker":
            remote.api("DELETE", f"/deployments/{d['id']}")
    assert shape() == []
    pushes = registry.pushes()
    done = checkout.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all",
                        "--prefect-file", "deploy/projects/alpha/prefect.yaml")  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert shape() == before
    assert registry.pushes() == pushes + 1  # without airnub the push step pushes
    assert "reusing" not in done.stdout


def test_the_kubernetes_variant_deploys_the_same_digest(
    deployed: str, checkout: Copy, remote: Remote
) -> None:
    done = checkout.airnub("deploy", "remote", "--prefect-file", "prefect.k8s.yaml")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    deps = [d for d in remote.api("POST", "/deployments/filter", {}) if d["name"] == "kubernetes"]
    assert len(deps) == 3
    for d in deps:
        assert d["work_pool_name"] == "airnub-kubernetes"
        assert d["job_variables"]["image"] == deployed  # same sources: same image, same digest
        assert d["job_variables"]["cpu_request"] == "250m"
    pool = remote.api("GET", "/work_pools/airnub-kubernetes")
    pod = pool["base_job_template"]["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def wait_final(remote: Remote, run_id: str, timeout: float = 300) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        state = remote.api("GET", f"/flow_runs/{run_id}")["state"]
        if (
            state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            or time.monotonic() > deadline
        ):
            return dict(state)
        time.sleep(2)


def test_outputs_go_to_an_s3_bucket_through_the_storage_block(
    deployed: str, docker_worker: None, checkout: Copy, remote: Remote, s3: S3
) -> None:
    token = f"token-{secrets.token_hex(8)}"
    # applies the S3 blocks and the source-token Secret block too (values from secret_env)
    done = checkout.airnub("deploy", "remote", ALPHA_SOURCE_TOKEN=token, **s3.env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "block s3-bucket/alpha-s3: created" in out
    assert "block secret/alpha-source-token: created" in out
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in out and token not in out
    dep = remote.api("GET", "/deployments/name/alpha_pipeline/docker")
    env = {**dep["job_variables"]["env"], "ALPHA_STORAGE_BLOCK": "s3-bucket/alpha-s3"}
    sources = remote.api("GET", "/variables/name/alpha_sources")["value"]
    sources[0]["auth"] = {"secret": "alpha-source-token", "scheme": "bearer"}  # read in the run
    run = remote.api("POST", f"/deployments/{dep['id']}/create_flow_run",
                     {"parameters": {"sources": sources},
                      "job_variables": {"env": env, "auto_remove": False}})  # fmt: skip
    state = wait_final(remote, run["id"])
    assert state["type"] == "COMPLETED", state
    keys = s3.keys()
    assert "alpha/manifests/latest.json" in keys, keys
    assert "alpha/processed/summary.json" in keys, keys
    assert any(k.startswith("alpha/raw/cities/") for k in keys)
    # the secret key is in the block only: not in a deployment, a job variable or the container
    ids = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=io.prefect.flow-run-id={run['id']}"],
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    try:
        inspect = subprocess.run(
            ["docker", "inspect", *ids], capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in inspect
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in json.dumps(
        remote.api("POST", "/deployments/filter", {})
    )


def test_the_s3_code_storage_variant_runs_to_completed(
    deployed: str, docker_worker: None, checkout: Copy, remote: Remote, s3: S3
) -> None:
    done = checkout.airnub("deploy", "remote", "--prefect-file", "prefect.s3.yaml", **s3.env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    code = S3(s3.endpoint, "alpha-code", s3.env).keys()
    assert "airnub-prefect-starter/packages/flows_alpha/src/flows_alpha/pipeline.py" in code
    assert not [k for k in code if k.endswith("/.env") or "/.git/" in k or "/data/" in k]
    dep = remote.api("GET", "/deployments/name/alpha_pipeline/s3-code")
    assert dep["job_variables"]["image"] == deployed
    steps = json.dumps(dep["pull_steps"])
    assert (
        "pull_from_s3" in steps
        and "{{ prefect.blocks.aws-credentials.alpha-s3-credentials }}" in steps
    )
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in steps
    run = remote.api("POST", f"/deployments/{dep['id']}/create_flow_run", {})
    state = wait_final(remote, run["id"])
    assert state["type"] == "COMPLETED", state
