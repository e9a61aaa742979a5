"""What a project left on a Prefect server: its deployments and variables, found from its files
and deleted on request (`airnub remove project`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import yaml

from deploy_tools.settings import ProjectSettings
from deploy_tools.setup.entrypoints import flow_name, load_flow


@dataclass(frozen=True)
class ServerObjects:
    """A project's objects by name: `flow/deployment` and variable names."""

    deployments: list[str]
    variables: list[str]

    def __bool__(self) -> bool:
        return bool(self.deployments or self.variables)


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def project_objects(project: ProjectSettings) -> ServerObjects:
    """The deployments and variables `project`'s deploy files define (flows are imported to
    learn their names; one that does not: its `flow_name` key, else its function)."""
    deployments: set[str] = set()
    for file in _yaml_files(project.deploy_dir):
        doc = yaml.safe_load(file.read_text()) or {}
        for dep in doc.get("deployments") or []:
            entrypoint = str(dep.get("entrypoint", ""))
            try:
                flow = load_flow(entrypoint)
            except ValueError:
                flow = None
            deployments.add(f"{flow_name(dep, entrypoint, flow)}/{dep.get('name')}")
    variables = set()
    for file in _yaml_files(project.deploy_dir / "variables"):
        doc = yaml.safe_load(file.read_text()) or {}
        if doc.get("name"):
            variables.add(str(doc["name"]))
    return ServerObjects(sorted(deployments), sorted(variables))


async def _existing(objects: ServerObjects) -> ServerObjects:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found_deps, found_vars = [], []
    async with get_client() as client:
        for name in objects.deployments:
            try:
                await client.read_deployment_by_name(name)
                found_deps.append(name)
            except ObjectNotFound:
                pass
        for var in objects.variables:
            if await client.read_variable_by_name(var) is not None:
                found_vars.append(var)
    return ServerObjects(found_deps, found_vars)


async def _delete(objects: ServerObjects) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for name in objects.deployments:
            deployment = await client.read_deployment_by_name(name)
            await client.delete_deployment(deployment.id)
        for var in objects.variables:
            await client.delete_variable_by_name(var)


def existing_objects(api_url: str, objects: ServerObjects) -> ServerObjects:
    """Those of `objects` the server at `api_url` holds."""
    from deploy_tools.prefect_api import GONE_RETRIES, use_api

    with use_api(api_url, retries=GONE_RETRIES):
        return asyncio.run(_existing(objects))


def delete_objects(api_url: str, objects: ServerObjects) -> None:
    """Delete `objects` (which exist) from the server at `api_url`."""
    from deploy_tools.prefect_api import GONE_RETRIES, use_api

    with use_api(api_url, retries=GONE_RETRIES):
        asyncio.run(_delete(objects))
