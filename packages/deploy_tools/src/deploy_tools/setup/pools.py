"""Base job templates of work pools, with defaults from `job_variables`."""

from __future__ import annotations

import copy
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
