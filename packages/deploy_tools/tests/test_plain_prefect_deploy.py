"""A project's local deployment file (the fixture checkout's alpha) is plain Prefect: `prefect deploy --all --prefect-file
deploy/projects/alpha/prefect.local.yaml`, with the stack's values in the environment and the
pool created, is accepted by a real server (the session's `prefect_harness`) and makes the
deployments `airnub setup apply` makes from the same file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy_tools.local.service import setup_files
from deploy_tools.local.stack import Ports, ProcessStack
from deploy_tools.settings import load_settings
from deploy_tools.setup import apply_plan, load_plan

pytestmark = pytest.mark.usefixtures("prefect_harness")

PREFECT = Path(sys.executable).parent / "prefect"
LOCAL_FILE = "deploy/projects/alpha/prefect.local.yaml"
NAMES = ("alpha_ingest/local", "alpha_process/local", "alpha_pipeline/local")
# What a deployment is: everything but its identity, times, and the version `prefect deploy`
# takes from the flow (its file's hash; `setup apply` records none).
FIELDS = (
    "entrypoint",
    "work_pool_name",
    "work_queue_name",
    "pull_steps",
    "tags",
    "description",
    "parameters",
    "parameter_openapi_schema",
    "enforce_parameter_schema",
    "job_variables",
    "concurrency_limit",
    "paused",
    "path",
    "storage_document_id",
    "infrastructure_document_id",
)


@pytest.fixture(autouse=True)
def _no_optional_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALPHA_S3_BUCKET", "ALPHA_SOURCE_TOKEN"):
        monkeypatch.delenv(name, raising=False)


async def read(names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each deployment by name, as the API returns it (JSON), with its schedules."""
    from prefect import get_client

    async with get_client() as client:
        found = {}
        for name in names:
            dep = await client.read_deployment_by_name(name)
            found[name] = {
                **{k: getattr(dep, k) for k in FIELDS},
                "schedules": [s.schedule.model_dump(mode="json") for s in dep.schedules],
                "flow": (await client.read_flow(dep.flow_id)).name,
            }
        return found


async def delete(names: tuple[str, ...]) -> None:
    from prefect import get_client

    async with get_client() as client:
        for name in names:
            await client.delete_deployment((await client.read_deployment_by_name(name)).id)


async def test_prefect_deploy_accepts_the_local_file_and_makes_what_setup_apply_makes(
    checkout: Path,
) -> None:
    from prefect.settings import PREFECT_API_URL

    settings = load_settings(checkout)
    stack = ProcessStack(settings, Ports(4200, 8765))
    values = stack.apply_env(settings.project("alpha"))
    # `airnub setup apply`: the pool, the variables and blocks, then the deployments.
    await apply_plan(load_plan(setup_files(settings, stack), base=settings.project_dir))
    applied = await read(NAMES)
    await delete(NAMES)  # so what follows is made by `prefect deploy` alone

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}
    env.update(values)  # STACK_PROJECT_DIR, STACK_POOL and the project's own
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_HOME=str(checkout / "prefect-home"),  # not the caller's profiles
        DO_NOT_TRACK="1",
        # the fixture's flows, as the test process imports them (conftest's sys.path)
        PYTHONPATH=os.pathsep.join(str(p) for p in sorted(checkout.glob("packages/*/src"))),
    )
    done = subprocess.run(
        [str(PREFECT), "deploy", "--all", "--prefect-file", LOCAL_FILE],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    deployed = await read(NAMES)

    assert deployed == applied
    root = str(settings.project_dir)
    for name, dep in deployed.items():
        assert dep["flow"] == name.split("/")[0]
        assert dep["work_pool_name"] == "local-process"
        assert dep["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": root}}
        ]
    assert [d["entrypoint"] for d in deployed.values()] == [
        f"airnub_fixture_alpha.flows:{name.split('/')[0]}" for name in NAMES
    ]
