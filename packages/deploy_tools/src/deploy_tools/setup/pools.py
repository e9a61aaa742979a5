"""Base job templates of work pools, with defaults from `job_variables`, and the checks that
job variables (a pool file's, a deployment's) fit their pool's template."""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deploy_tools.setup.models import WorkPoolFile

# Docker's size format (`docker run -m`, prefect-docker's mem_limit): digits, then b, k, m or g.
_SIZE = re.compile(r"^([0-9]+)([bkmg]?)$", re.IGNORECASE)
_UNIT = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_DOCKER_MIN_MEMORY = 6 * 1024**2  # the engine refuses less
# Kubernetes quantities (cpu: 250m, 1; memory: 512Mi, 1Gi, 1G): a number and an optional suffix.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_K8S_QUANTITIES = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
# container_create_kwargs that docker-py wants as int (it raises TypeError in the worker).
_DOCKER_INT_KWARGS = ("cpu_period", "cpu_quota", "cpu_shares", "nano_cpus", "pids_limit")


def default_template(pool: WorkPoolFile) -> dict[str, Any]:
    """A copy of the pool's own template (read from its file), or its worker type's default.

    Raises:
        ValueError: a kubernetes pool without a template.
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
    return copy.deepcopy(template)


def base_job_template(pool: WorkPoolFile) -> dict[str, Any]:
    """The pool's template with `pool.job_variables` as variable defaults.

    Raises:
        ValueError: the job variables do not fit the template (every problem, one a line).
    """
    template = default_template(pool)
    problems = job_variable_problems(pool.job_variables, template, pool.type)
    if problems:
        raise ValueError("\n".join(problems))
    properties = template["variables"]["properties"]
    for key, value in pool.job_variables.items():
        properties[key]["default"] = value
    return template


def _is_placeholder(value: Any) -> bool:
    # `{{ push.image_ref }}`, `{{ $NAME }}`: Prefect resolves it at deploy time, then its server
    # checks the value against the template.
    return isinstance(value, str) and "{{" in value


def _defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    properties = template["variables"]["properties"]
    return {k: v["default"] for k, v in properties.items() if "default" in v}


def job_variable_problems(
    values: Mapping[str, Any],
    template: Mapping[str, Any],
    worker_type: str,
    *,
    key: str = "job_variables",
) -> list[str]:
    """One problem per job variable in `values` that the template does not accept.

    Checked: the name (a variable of the template), the type (its JSON schema in
    `variables.properties`, with Prefect's own validator, as the server does), and what the
    schema cannot say: Docker sizes (`mem_limit`, `memswap_limit`, swap at least the memory,
    counting the template's defaults), `container_create_kwargs` names and integer CPU values,
    Kubernetes quantities. A `{{ … }}` placeholder is left to Prefect.

    Example:
        >>> job_variable_problems({"mem_limit": "2 GB"}, template, "docker")
        ["job_variables.mem_limit: '2 GB' is not a size: digits and b, k, m or g (e.g. 512m, 2g)"]
    """
    from prefect.utilities.schema_tools import validate

    properties = template["variables"]["properties"]
    unknown = [k for k in values if k not in properties]
    problems = [
        f"{key}.{k}: not a {worker_type} job variable "
        f"(expected one of: {', '.join(sorted(properties))})"
        for k in unknown
    ]
    given = {k: v for k, v in values.items() if k in properties and not _is_placeholder(v)}
    for err in validate(given, template["variables"], ignore_required=True):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        if err.validator in ("anyOf", "type", "enum"):
            what = f"expected {_expected(err.schema)}, got {err.instance!r}"
        else:
            what = err.message
        problems.append(f"{key}{where}: {what}")
    if problems:
        return problems
    merged = {**_defaults(template), **given}
    if worker_type == "docker":
        problems += [f"{key}.{p}" for p in _docker_problems(merged)]
    if worker_type == "kubernetes":
        problems += [
            f"{key}.{k}: {given[k]!r} is not a Kubernetes quantity (e.g. 250m, 1, 512Mi, 1Gi)"
            for k in _K8S_QUANTITIES
            if isinstance(given.get(k), str) and not _QUANTITY.match(given[k])
        ]
    return problems


_TYPES = {"string": "a string", "integer": "an integer", "number": "a number",
          "boolean": "true or false", "object": "a mapping", "null": "null"}  # fmt: skip


def _expected(schema: Any) -> str:
    """What a JSON schema accepts, in words: `a string or null`, `one of 'Always', 'Never'`."""
    if not isinstance(schema, dict):
        return "a valid value"
    if "anyOf" in schema:
        # Prefect's preprocessing leaves `items` beside `anyOf: [{type: array}, {type: null}]`
        items = {"items": schema["items"]} if "items" in schema else {}
        return " or ".join(_expected({**items, **s}) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if schema.get("type") == "array":
        return f"a list of {_expected(schema.get('items', {})).removeprefix('a ')}s"
    if "$ref" in schema:
        return f"a {schema['$ref'].rsplit('/', 1)[-1]}"
    return _TYPES.get(str(schema.get("type")), "a valid value")


def _size(value: Any) -> int | None:
    found = _SIZE.match(value) if isinstance(value, str) else None
    return int(found.group(1)) * _UNIT[found.group(2).lower()] if found else None


def _docker_problems(merged: Mapping[str, Any]) -> list[str]:
    """Problems of the Docker values prefect-docker passes to docker-py as they are (the
    template's defaults with the values given over them)."""
    from docker.models.containers import RUN_CREATE_KWARGS, RUN_HOST_CONFIG_KWARGS

    problems = []
    memory, swap = merged.get("mem_limit"), merged.get("memswap_limit")
    for name, value in (("mem_limit", memory), ("memswap_limit", swap)):
        if value is None or _is_placeholder(value) or (name == "memswap_limit" and value == "-1"):
            continue
        size = _size(value)
        if size is None:
            problems.append(f"{name}: {value!r} is not a size: digits and b, k, m or g "
                            "(e.g. 512m, 2g)")  # fmt: skip
        elif size < _DOCKER_MIN_MEMORY:
            problems.append(f"{name}: {value!r} is less than Docker's minimum, 6m")
    if memory is None and swap is not None:
        problems.append(f"memswap_limit: {swap!r} without mem_limit; Docker refuses it")
    mem_size, swap_size = _size(memory), _size(swap)
    if mem_size and swap_size and swap_size < mem_size:
        problems.append(f"memswap_limit: {swap!r} is less than mem_limit {memory!r}; Docker "
                        "refuses it (memswap_limit is memory plus swap: equal means no swap)")  # fmt: skip
    kwargs = merged.get("container_create_kwargs") or {}
    accepted = {*RUN_CREATE_KWARGS, *RUN_HOST_CONFIG_KWARGS, "ports", "network",
                "networking_config"}  # fmt: skip
    for name in sorted(set(kwargs) - accepted):
        problems.append(f"container_create_kwargs.{name}: not an argument of docker-py's "
                        "containers.create")  # fmt: skip
    for name in _DOCKER_INT_KWARGS:
        value = kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"container_create_kwargs.{name}: {value!r} is not an integer")
    return problems


@dataclass(frozen=True)
class PoolUse:
    """A deployment naming a work pool: `file` (as shown), `key` in it (`….work_pool.name`),
    the pool's name, and the deployment's `work_pool.job_variables`."""

    file: str
    key: str
    pool: str
    job_variables: Mapping[str, Any] = field(default_factory=dict)


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


def deployment_job_variable_problems(
    uses: Iterable[PoolUse], pools: Iterable[WorkPoolFile]
) -> list[str]:
    """One problem per job variable of a deployment that its pool's template does not accept,
    for each use whose pool is one of `pools` (the pools the files define; a pool only on the
    server is checked by Prefect's server). The pool file's own values are the defaults, as on
    the server: a deployment's `mem_limit: 4g` under the pool's `memswap_limit: 2g` is refused.

    The one job-variable check of `setup apply` and `deploy remote`.
    """
    templates = {p.name: (p.type, base_job_template(p)) for p in pools}
    problems = []
    for u in uses:
        if u.pool in templates:
            worker_type, template = templates[u.pool]
            key = f"{u.key.removesuffix('.name')}.job_variables"
            found = job_variable_problems(u.job_variables, template, worker_type, key=key)
            problems += [f"{u.file}: {p}" for p in found]
    return problems


def kubernetes_job(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest prefect-kubernetes' worker would submit for a flow run of a deployment
    with job variables `values` on a pool with base job template `template` (its own
    `from_template_and_values` and `prepare_for_flow_run`, offline: no block or variable
    references to look up)."""
    import asyncio
    import uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    class NoAPI:  # nothing to resolve through the API
        pass

    async def build() -> dict[str, Any]:
        cfg = await KubernetesWorkerJobConfiguration.from_template_and_values(
            template, values, client=NoAPI()
        )
        cfg.prepare_for_flow_run(
            FlowRun(id=uuid.UUID(int=1), name="offline", flow_id=uuid.UUID(int=2))
        )
        return dict(cfg.job_manifest)

    return asyncio.run(build())
