"""The remote worker as code on a fresh host: an empty folder that holds only
deploy/workers/docker/compose.yaml, the environment `deploy remote`'s printed command names
(plus the credentials, exported), and Docker. The command is run as printed; a flow run of a
deployed deployment then completes in a container of the deployed digest.

The stand-in remote listens on 127.0.0.1: the printed command says
AIRNUB_WORKER_NETWORK_MODE=host for such an API, and prefect-docker then runs the flow-run
containers on the host network too.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from deploy_tools.remote.worker import COMPOSE_FILE, KUBERNETES_DIR
from tests.checkout import REPO
from tests.remote.conftest import Copy, Remote
from tests.remote.test_deploy_remote import VOLUME, wait_final
from tests.stack.test_local_stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.stack]


def test_the_compose_file_names_each_missing_variable(tmp_path: Path) -> None:
    shutil.copy(REPO / COMPOSE_FILE, tmp_path / "compose.yaml")
    full = {"AIRNUB_WORKER_IMAGE": "r/w@sha256:" + "0" * 64, "PREFECT_API_URL": "http://x/api",
            "AIRNUB_DOCKER_GID": "999"}  # fmt: skip
    for missing in full:
        env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in full.items() if k != missing}}
        done = subprocess.run(["docker", "compose", "-f", "compose.yaml", "config"], cwd=tmp_path,
                              env=env, capture_output=True, text=True)  # fmt: skip
        assert done.returncode != 0
        assert f"{missing} is not set - " in done.stderr, done.stderr


@dataclass
class Deployed:
    """`deploy remote`'s output, its image by digest, and when it ended."""

    stdout: str
    image: str
    at: float


@pytest.fixture(scope="module")
def deployed(checkout: Copy, remote: Remote) -> Deployed:
    done = checkout.airnub("deploy", "remote")
    at = time.monotonic()
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert remote.auth not in done.stdout + done.stderr
    ref = re.search(r"Image\s+(\S+@sha256:[0-9a-f]{64})", done.stdout)
    assert ref, done.stdout
    return Deployed(done.stdout, ref.group(1), at)


def test_a_fresh_host_runs_the_printed_command_and_a_run_completes_there(
    deployed: Deployed, remote: Remote, tmp_path: Path
) -> None:
    image, deployed_at = deployed.image, deployed.at
    (command,) = [ln.strip() for ln in deployed.stdout.splitlines() if "docker compose -f" in ln]
    assert f"AIRNUB_WORKER_IMAGE={image} " in command
    assert "AIRNUB_WORKER_NETWORK_MODE=host" in command  # the remote is on 127.0.0.1

    host = tmp_path / "fresh-host"
    (host / COMPOSE_FILE).parent.mkdir(parents=True)
    shutil.copy(REPO / COMPOSE_FILE, host / COMPOSE_FILE)  # nothing else of the checkout
    project = f"airnub-workers-test-{secrets.token_hex(4)}"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PREFECT_API_AUTH_STRING": remote.auth,  # exported, as the printed line says
        "COMPOSE_PROJECT_NAME": project,  # unique here; a real host keeps compose's default
        "AIRNUB_WORKER_HEALTH_PORT": str(free_port()),  # host network: a free port of this host
        "DO_NOT_TRACK": "1",
    }
    dep = remote.api("GET", "/deployments/name/alpha_pipeline/docker")
    run_ids: list[str] = []
    try:
        up = subprocess.run(["sh", "-c", command], cwd=host, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        started = time.monotonic()
        ps = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        assert len(ps) == 1
        worker = json.loads(subprocess.run(["docker", "inspect", ps[0]], capture_output=True,
                                           text=True, check=True).stdout)[0]  # fmt: skip
        assert worker["Config"]["Image"] == image
        assert worker["Image"] == image.split("@", 1)[1]
        assert worker["State"]["Health"]["Status"] == "healthy"
        assert worker["Config"]["User"] == "10001:10001"
        assert worker["HostConfig"]["Memory"] > 0 and worker["HostConfig"]["NanoCpus"] > 0

        run = remote.api("POST", f"/deployments/{dep['id']}/create_flow_run",
                         {"job_variables": {"auto_remove": False}})  # fmt: skip
        run_ids.append(run["id"])
        state = wait_final(remote, run["id"])
        completed = time.monotonic()
        assert state["type"] == "COMPLETED", state
        ids = subprocess.run(["docker", "ps", "-a", "-q", "--filter",
                              f"label=io.prefect.flow-run-id={run['id']}"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        assert len(ids) == 1
        info = json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True,
                                         text=True, check=True).stdout)[0]  # fmt: skip
        assert info["Image"] == image.split("@", 1)[1]
        assert info["Config"]["Image"] == image
        print(
            f"\nremote worker: deploy remote done -> first Completed run: "
            f"{completed - deployed_at:.1f} s ({completed - started:.1f} s after compose up)"
        )
    finally:
        subprocess.run(["docker", "compose", "-p", project, "down", "--timeout", "20"],
                       capture_output=True, timeout=120)  # fmt: skip
        for run_id in run_ids:
            ids = subprocess.run(["docker", "ps", "-a", "-q", "--filter",
                                  f"label=io.prefect.flow-run-id={run_id}"],
                                 capture_output=True, text=True).stdout.split()  # fmt: skip
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", VOLUME], capture_output=True)


def docker_size(quantity: str) -> str:
    """A Kubernetes quantity as `docker run` takes it: 512Mi -> 512m, 500m CPU -> 0.5."""
    if quantity.endswith(("Mi", "Gi")):
        return quantity[:-2] + quantity[-2].lower()
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def test_the_kubernetes_manifest_s_worker_runs_in_the_image_as_the_pod_would(
    deployed: Deployed, remote: Remote
) -> None:
    """No cluster here: the Deployment's container (args, plain env, user, read-only root with
    its scratch volumes, no capabilities, limits) as a container of the digest, on the host
    network. Its worker joins the Kubernetes pool and /health answers (the probes' path); only
    its observer, which needs a cluster, fails."""
    manifest = yaml.safe_load((REPO / KUBERNETES_DIR / "deployment.yaml").read_text())
    pod = manifest["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    port = free_port()
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    env |= {
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",  # host network: this host's loopback only
        "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES": "airnub",  # the fieldRef's value
        "PREFECT_API_URL": remote.api_url,  # from the Secret in the cluster
        "PREFECT_API_AUTH_STRING": remote.auth,
    }
    user = pod["securityContext"]
    name = f"airnub-workers-k8s-{secrets.token_hex(4)}"
    cmd = ["docker", "run", "-d", "--pull", "never", "--name", name, "--network", "host",
           "--user", f"{user['runAsUser']}:{user['runAsGroup']}", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges",
           "--memory", docker_size(c["resources"]["limits"]["memory"]),
           "--cpus", docker_size(c["resources"]["limits"]["cpu"])]  # fmt: skip
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    cmd.append("--read-only")
    for mount in c["volumeMounts"]:
        cmd += ["--tmpfs", f"{mount['mountPath']}:uid={user['runAsUser']},gid={user['runAsGroup']}"]
    for key in env:
        cmd += ["-e", key]  # values from the environment: the auth string is not an argument
    try:
        subprocess.run([*cmd, deployed.image, *c["args"]], env={"PATH": "/usr/bin:/bin", **env},
                       capture_output=True, text=True, check=True)  # fmt: skip
        deadline, status = time.monotonic() + 90, 0
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(1)
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        assert status == 200, (logs.stdout + logs.stderr)[-3000:]
        workers: list[dict[str, str]] = []
        while time.monotonic() < deadline:  # its first heartbeat follows the first poll
            workers = remote.api("POST", "/work_pools/airnub-kubernetes/workers/filter", {})
            if any(w["name"].startswith("KubernetesWorker") for w in workers):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no Kubernetes worker joined the pool: {workers}")
        assert remote.auth not in logs.stdout + logs.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
