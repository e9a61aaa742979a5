"""`remove project` on a running stack: the project's deployments and variables, found from its
files, are read on a real server (the session's `prefect_harness`) and deleted; others stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_tools.local.service import setup_files
from deploy_tools.local.stack import Ports, ProcessStack
from deploy_tools.scaffold.cleanup import (
    ServerObjects,
    delete_objects,
    existing_objects,
    project_objects,
)
from deploy_tools.settings import load_settings
from deploy_tools.setup import apply_plan, load_plan

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def _no_optional_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALPHA_S3_BUCKET", "ALPHA_SOURCE_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_objects_come_from_every_deploy_file_of_the_project(checkout: Path) -> None:
    alpha = load_settings(checkout).project("alpha")
    objects = project_objects(alpha)
    assert objects.variables == ["alpha_sources"]
    flows = ("alpha_ingest", "alpha_process", "alpha_pipeline")
    for flow in flows:
        assert f"{flow}/local" in objects.deployments  # prefect.local.yaml
        assert f"{flow}/docker" in objects.deployments  # prefect.yaml
    assert all(d.split("/")[0] in flows for d in objects.deployments)


async def test_only_what_the_server_holds_is_offered_then_deleted(checkout: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    settings = load_settings(checkout)
    await apply_plan(load_plan(setup_files(settings, ProcessStack(settings, Ports(4200, 8765))),
                               base=settings.project_dir))  # fmt: skip
    url = str(PREFECT_API_URL.value())
    alpha, beta = settings.project("alpha"), settings.project("beta")
    found = await _in_thread(existing_objects, url, project_objects(alpha))
    # the local stack holds alpha's local deployments and its variable, not the remote ones
    assert found == ServerObjects(
        ["alpha_ingest/local", "alpha_pipeline/local", "alpha_process/local"], ["alpha_sources"]
    )
    await _in_thread(delete_objects, url, found)
    assert not await _in_thread(existing_objects, url, project_objects(alpha))
    assert await _in_thread(existing_objects, url, project_objects(beta))  # another project's stay


async def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """The functions run their own event loop (as the CLI calls them)."""
    import asyncio

    return await asyncio.to_thread(fn, *args)
