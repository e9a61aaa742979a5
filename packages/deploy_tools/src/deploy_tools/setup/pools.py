"""Base job templates of work pools, with defaults from `job_variables`."""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from deploy_tools.setup.models import WorkPoolFile


def base_job_template(pool: WorkPoolFile) -> dict[str, Any]:
    """The worker type's default template with `pool.job_variables` as variable defaults.

    Raises:
        ValueError: a job variable the worker type does not have.
    """
    if isinstance(pool.base_job_template, dict):
        template = pool.base_job_template
    elif pool.type == "kubernetes":
        raise ValueError("a kubernetes pool needs base_job_template: <a JSON file beside it>")
    elif pool.type == "process":
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
    else:
        from prefect_docker.worker import DockerWorker

        template = DockerWorker.get_default_base_job_template()
    template = copy.deepcopy(template)
    properties = template["variables"]["properties"]
    for key, value in pool.job_variables.items():
        if key not in properties:
            raise ValueError(
                f"job_variables.{key}: not a {pool.type} job variable "
                f"(expected one of: {', '.join(sorted(properties))})"
            )
        properties[key]["default"] = value
    return template


@dataclass(frozen=True)
class PoolUse:
    """A deployment naming a work pool: `file` (as shown), `key` in it, the pool's name."""

    file: str
    key: str
    pool: str


def missing_pools(uses: Iterable[PoolUse], known: Collection[str], *, nowhere: str) -> list[str]:
    """One problem per use whose pool is not in `known`, naming its file, its key and `known`.

    `nowhere` says where the pool was looked for (e.g. "no file under deploy/work_pools/
    defines it and the server has none of that name"). The one pool check of both the local
    and the remote plan.

    Example:
        >>> missing_pools([PoolUse("a.yaml", "work_pool.name", "x")], {"p"}, nowhere="not found")
        ["a.yaml: work_pool.name: work pool 'x': not found (pools that exist: p)"]
    """
    names = ", ".join(sorted(known)) or "none"
    return [
        f"{u.file}: {u.key}: work pool {u.pool!r}: {nowhere} (pools that exist: {names})"
        for u in uses
        if u.pool not in known
    ]
