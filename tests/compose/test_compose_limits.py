"""The compose stack's resource limits, as the engine applies them: every service of the shared
session stack (`compose_stack`) runs with its memory limit, no swap, and its CPU limit from
deploy/compose.yaml's defaults; an AIRNUB_<SERVICE>_MEMORY / _CPUS value replaces them.

Runs before test_compose_stack.py and leaves the stack as it found it (demo-data is recreated
with an override, then with the defaults again).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from typing import Any

import pytest

from tests.compose.conftest import Checkout

pytestmark = [pytest.mark.docker, pytest.mark.stack]

GIB, MIB = 1024**3, 1024**2
# deploy/compose.yaml's defaults: (memory in bytes, CPUs)
DEFAULTS = {
    "postgres": (1 * GIB, 2.0),
    "prefect-server": (1 * GIB, 2.0),
    "demo-data": (256 * MIB, 0.5),
    "worker": (4 * GIB, 2.0),
}


def host_config(stack: Checkout, service: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", stack.container(service)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return dict(json.loads(out)[0]["HostConfig"])


def limits(stack: Checkout, service: str) -> tuple[int, int, float]:
    """(Memory, MemorySwap, CPUs) of `service`'s container."""
    hc = host_config(stack, service)
    return hc["Memory"], hc["MemorySwap"], hc["NanoCpus"] / 1e9


def test_every_service_runs_with_its_default_limits_and_no_swap(compose_stack: Checkout) -> None:
    running = set(compose_stack.compose("ps", "--services").stdout.split())
    assert set(DEFAULTS) <= running, running
    for service, (memory, cpus) in DEFAULTS.items():
        assert limits(compose_stack, service) == (memory, memory, cpus), service


def test_an_environment_value_replaces_a_default(compose_stack: Checkout) -> None:
    def up(**env: str) -> None:
        cmd = [*shlex.split(compose_stack.compose_command()), *compose_stack.compose_file_args(),
               "up", "--detach", "--wait", "--no-deps", "demo-data"]  # fmt: skip
        done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=180, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr

    try:
        up(AIRNUB_DEMO_DATA_MEMORY="300m", AIRNUB_DEMO_DATA_CPUS="0.25")
        assert limits(compose_stack, "demo-data") == (300 * MIB, 300 * MIB, 0.25)
    finally:
        up()
    assert limits(compose_stack, "demo-data") == (256 * MIB, 256 * MIB, 0.5)
