"""The limits a prefect-docker worker applies to flow-run containers: the remote's Docker pool
(deploy/work_pools/airnub-docker.yaml, as `deploy remote` created it) gives every run 2 GiB,
no swap and 2 CPUs; a deployment's own `work_pool.job_variables` replace them. Read from the
engine (`docker inspect` of each run's container, kept with `auto_remove: False`), after
both runs Completed inside their limits.

Shares the session's `deployed` remote (tests/remote/conftest.py); both runs go at once.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.remote.conftest import Remote

pytestmark = [pytest.mark.docker, pytest.mark.stack]

GIB = 1024**3
# A deployment that raises memory (and swap with it: Docker refuses swap below memory) and
# gives 1 CPU; container_create_kwargs is replaced as a whole.
OVERRIDE = {
    "mem_limit": "3g",
    "memswap_limit": "3g",
    "container_create_kwargs": {"cpu_period": 100000, "cpu_quota": 100000},
}
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def overriding(deployed: str, remote: Remote) -> Iterator[dict[str, Any]]:
    """alpha_pipeline deployed again as `limits-override`, with `OVERRIDE` in its job
    variables (what `prefect deploy` sends for a file that sets them)."""
    dep = remote.api("GET", "/deployments/name/alpha_pipeline/docker")
    keep = ("flow_id", "entrypoint", "work_pool_name", "pull_steps", "parameters", "tags",
            "parameter_openapi_schema", "enforce_parameter_schema")  # fmt: skip
    body = {k: dep[k] for k in keep}
    body |= {"name": "limits-override", "job_variables": {**dep["job_variables"], **OVERRIDE}}
    created = remote.api("POST", "/deployments/", body)
    try:
        yield dict(created)
    finally:
        remote.api("DELETE", f"/deployments/{created['id']}")


def containers(run_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=io.prefect.flow-run-id={run_id}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return out.split()


def host_config(run_id: str) -> dict[str, Any]:
    """HostConfig of the one container of flow run `run_id`."""
    ids = containers(run_id)
    assert len(ids) == 1, ids
    out = subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return dict(json.loads(out)[0]["HostConfig"])


def test_flow_runs_get_the_pool_limits_or_their_deployment_s(
    deployed: str, docker_worker: None, remote: Remote, overriding: dict[str, Any]
) -> None:
    pool = remote.api("GET", "/deployments/name/alpha_pipeline/docker")
    assert not {"mem_limit", "memswap_limit", "container_create_kwargs"} & set(
        pool["job_variables"]
    )
    started = time.monotonic()
    runs = {
        name: remote.api("POST", f"/deployments/{dep['id']}/create_flow_run",
                         {"job_variables": {"auto_remove": False}})["id"]  # keep the container
        for name, dep in (("pool", pool), ("override", overriding))
    }  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = {n: remote.api("GET", f"/flow_runs/{i}")["state"] for n, i in runs.items()}
            if all(s["type"] in TERMINAL for s in states.values()):
                break
            time.sleep(2)
        print(f"figures (s): two limited runs to a final state {time.monotonic() - started:.1f}")
        assert {n: s["type"] for n, s in states.items()} == {"pool": "COMPLETED",
                                                              "override": "COMPLETED"}, states  # fmt: skip
        limits = {
            name: (hc["Memory"], hc["MemorySwap"], hc["CpuPeriod"], hc["CpuQuota"], hc["NanoCpus"])
            for name, hc in ((n, host_config(i)) for n, i in runs.items())
        }
    finally:
        for run_id in runs.values():
            subprocess.run(["docker", "rm", "-f", *containers(run_id)], capture_output=True)
    assert limits == {
        "pool": (2 * GIB, 2 * GIB, 100000, 200000, 0),  # 2 GiB, no swap, 2 CPUs
        "override": (3 * GIB, 3 * GIB, 100000, 100000, 0),  # 3 GiB, no swap, 1 CPU
    }
