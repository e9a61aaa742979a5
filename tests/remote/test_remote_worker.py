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
from pathlib import Path

import pytest

from deploy_tools.remote.worker import COMPOSE_FILE
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


def test_a_fresh_host_runs_the_printed_command_and_a_run_completes_there(
    checkout: Copy, remote: Remote, tmp_path: Path
) -> None:
    done = checkout.airnub("deploy", "remote")
    deployed_at = time.monotonic()
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    ref = re.search(r"Image\s+(\S+@sha256:[0-9a-f]{64})", done.stdout)
    assert ref, done.stdout
    image = ref.group(1)
    (command,) = [ln.strip() for ln in done.stdout.splitlines() if "docker compose -f" in ln]
    assert f"AIRNUB_WORKER_IMAGE={image} " in command
    assert "AIRNUB_WORKER_NETWORK_MODE=host" in command  # the remote is on 127.0.0.1
    assert remote.auth not in done.stdout + done.stderr

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
