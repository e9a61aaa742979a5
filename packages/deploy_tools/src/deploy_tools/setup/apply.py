"""Make the server match a validated `SetupPlan`; every object is compared before writing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from deploy_tools.setup.plan import (
    PlannedBlock,
    PlannedDeployment,
    SetupFilesError,
    SetupPlan,
    pool_problems,
)
from deploy_tools.setup.pools import base_job_template

Action = Literal["created", "updated", "unchanged", "skipped", "deleted"]


@dataclass(frozen=True)
class Change:
    """What `setup apply` did to one object. `detail` never holds a secret."""

    kind: str
    name: str
    action: Action
    detail: str = ""


class PartialApplyError(RuntimeError):
    """The apply stopped partway: what was applied, the object that failed, what was not.

    `applied` are the objects done before the failure (each with its action), `failed` is the
    object being applied (`deployment alpha_ingest/local`), `not_applied` the objects after it;
    `__cause__` is the error itself.
    """

    def __init__(
        self, applied: list[Change], failed: str, not_applied: list[str], error: BaseException
    ) -> None:
        super().__init__(f"{failed}: {type(error).__name__}: {error}")
        self.applied = applied
        self.failed = failed
        self.not_applied = not_applied
        self.error = error


async def apply_plan(
    plan: SetupPlan,
    *,
    after_pools: Callable[[], None] | None = None,
    after_each: Callable[[Change], None] | None = None,
) -> list[Change]:
    """Apply work pools, variables, blocks, then deployments, against the current API URL.

    First the server's work pools are read: a deployment whose pool neither the files define
    nor the server has stops the apply before anything is written. `after_pools` runs once the
    work pools exist (the local stack starts its worker there, so the worker's start-up overlaps
    the rest of the apply); `after_each` hears each applied object.

    Raises:
        SetupFilesError: a deployment names an unknown pool; nothing was applied.
        PartialApplyError: an object failed (the server refused it or went away) after others
            may have been applied; it lists which.
    """
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        on_server = [p.name for p in await client.read_work_pools()]
        problems = pool_problems(plan, on_server)
        if problems:
            raise SetupFilesError(problems)
        steps: list[tuple[str, Callable[[], Awaitable[Change]]]] = [
            *((f"work pool {p.name}", partial(_apply_pool, client, p)) for p in plan.work_pools),
            *(
                (f"variable {v.name}", partial(_apply_variable, client, v.name, v.value, v.tags))
                for v in plan.variables
            ),
            *(
                (f"block {b.spec.type}/{b.spec.name}", partial(_apply_block, client, b))
                for b in plan.blocks
            ),
            *(
                (f"deployment {d.flow.name}/{d.spec.name}", partial(_apply_deployment, client, d))
                for d in plan.deployments
            ),
        ]
        changes: list[Change] = []
        for i in range(len(steps) + 1):
            if i == len(plan.work_pools) and after_pools:
                try:
                    after_pools()
                except Exception as exc:
                    name = getattr(after_pools, "__name__", "after_pools")
                    rest = [label for label, _ in steps[i:]]
                    raise PartialApplyError(
                        changes, f"{name} (once the pools exist)", rest, exc
                    ) from exc
            if i == len(steps):
                break
            label, apply_one = steps[i]
            try:
                change = await apply_one()
            except Exception as exc:
                rest = [label for label, _ in steps[i + 1 :]]
                raise PartialApplyError(changes, label, rest, exc) from exc
            changes.append(change)
            if after_each:
                after_each(change)
    return changes


async def _apply_pool(client: Any, pool: Any) -> Change:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    template = base_job_template(pool)
    try:
        existing = await client.read_work_pool(pool.name)
    except ObjectNotFound:
        await client.create_work_pool(
            WorkPoolCreate(
                name=pool.name,
                type=pool.type,
                description=pool.description,
                concurrency_limit=pool.concurrency_limit,
                base_job_template=template,
            )
        )
        return Change("work pool", pool.name, "created")
    if existing.type != pool.type:
        raise RuntimeError(
            f"work pool {pool.name!r} exists with type {existing.type!r}, "
            f"the file says {pool.type!r}; delete it first"
        )
    if (existing.description, existing.concurrency_limit, existing.base_job_template) == (
        pool.description,
        pool.concurrency_limit,
        template,
    ):
        return Change("work pool", pool.name, "unchanged")
    await client.update_work_pool(
        pool.name,
        WorkPoolUpdate(
            description=pool.description,
            concurrency_limit=pool.concurrency_limit,
            base_job_template=template,
        ),
    )
    return Change("work pool", pool.name, "updated")


async def _apply_variable(client: Any, name: str, value: Any, tags: list[str]) -> Change:
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    existing = await client.read_variable_by_name(name)
    if existing is None:
        await client.create_variable(VariableCreate(name=name, value=value, tags=tags))
        return Change("variable", name, "created")
    if existing.value == value and sorted(existing.tags or []) == sorted(tags):
        return Change("variable", name, "unchanged")
    await client.update_variable(VariableUpdate(name=name, value=value, tags=tags))
    return Change("variable", name, "updated")


def _dump(block: Any) -> Any:
    """Field values with secrets revealed, without the document's id and name."""
    data = block.model_dump(mode="json", context={"include_secrets": True})
    return _public(data)


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    return value


async def _read_block(client: Any, slug: str, name: str) -> Any:
    """The stored block, or None."""
    from prefect.exceptions import ObjectNotFound

    from deploy_tools.setup.plan import block_class

    try:
        await client.read_block_document_by_name(name, slug, include_secrets=False)
    except ObjectNotFound:
        return None
    # The public load keeps the document's id, so a block referring to this one saves a
    # reference; like every load, it emits a "loaded" event.
    return await block_class(slug).aload(name, client=client)


async def _apply_block(client: Any, planned: PlannedBlock) -> Change:
    from deploy_tools.setup.plan import block_class

    spec = planned.spec
    key = f"{spec.type}/{spec.name}"
    if planned.skipped_because:
        return Change("block", key, "skipped", planned.skipped_because)
    block_cls = block_class(spec.type)
    values = dict(planned.data)
    for field_name, ref in spec.block_refs.items():
        ref_type, _, ref_name = ref.partition("/")
        ref_block = await _read_block(client, ref_type, ref_name)
        if ref_block is None:
            raise RuntimeError(f"block {key}: {field_name} refers to {ref}, which does not exist")
        values[field_name] = ref_block
    desired = block_cls(**values)
    existing = await _read_block(client, spec.type, spec.name)
    if existing is not None and _dump(existing) == _dump(desired):
        return Change("block", key, "unchanged")
    await desired.asave(spec.name, overwrite=True)  # keeps the document id
    return Change("block", key, "created" if existing is None else "updated")


async def _apply_deployment(client: Any, dep: PlannedDeployment) -> Change:
    """Create the deployment, or update what differs; schedules are kept, updated in place or
    created one by one (`deploy_tools.setup.schedules`), so unchanged ones keep their ids."""
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.exceptions import ObjectNotFound

    from deploy_tools.setup.schedules import (
        apply_schedules,
        new_schedules,
        plan_schedules,
        schedule_runs_now,
    )

    spec = dep.spec
    full_name = f"{dep.flow.name}/{spec.name}"
    fields: dict[str, Any] = {
        "entrypoint": spec.entrypoint,
        # Prefect stores a None description as the text "None" (then the deployment always
        # differed): default to the flow's docstring, as `prefect deploy` does.
        "description": spec.description or dep.flow.description or "",
        "tags": spec.tags,
        "parameters": spec.parameters,
        "work_pool_name": spec.work_pool.name,
        "job_variables": spec.work_pool.job_variables,
        "pull_steps": dep.pull_steps,
        # as `prefect deploy` stores it (RunnerDeployment), so both make the same deployment
        "parameter_openapi_schema": dep.flow.parameters.model_dump(exclude_unset=True),
        "enforce_parameter_schema": spec.enforce_parameter_schema,
        "version": spec.version,
    }
    try:
        existing = await client.read_deployment_by_name(full_name)
    except ObjectNotFound:
        existing = None
    if existing is None:
        flow_id = await client.create_flow_from_name(dep.flow.name)
        created = await client.create_deployment(
            flow_id=flow_id,
            name=spec.name,
            schedules=new_schedules(spec.schedules),
            work_queue_name=spec.work_pool.work_queue_name,
            concurrency_limit=spec.concurrency_limit,
            **fields,
        )
        if spec.schedules:
            await schedule_runs_now(client, created)
        return Change("deployment", full_name, "created")
    same = all(getattr(existing, k) == v for k, v in fields.items())
    same = same and (spec.work_pool.work_queue_name in (None, existing.work_queue_name))
    same = same and (
        existing.concurrency_limit == spec.concurrency_limit
        or getattr(existing.global_concurrency_limit, "limit", None) == spec.concurrency_limit
    )
    schedules = plan_schedules(spec.schedules, existing.schedules)
    if same and schedules.unchanged:
        return Change("deployment", full_name, "unchanged")  # its scheduled runs are kept
    if not same:
        # An update, not create_deployment's upsert: that one recreates every schedule.
        queue: dict[str, Any] = {}
        if spec.work_pool.work_queue_name:
            queue["work_queue_name"] = spec.work_pool.work_queue_name
        await client.update_deployment(
            existing.id,
            DeploymentUpdate(**fields, **queue, concurrency_limit=spec.concurrency_limit),
        )
    await apply_schedules(client, existing.id, schedules)
    # Every write deleted the future auto-scheduled runs: have them back now, at the same
    # times (same schedule ids and anchors), not after the scheduler's next loop.
    if spec.schedules and not existing.paused:
        await schedule_runs_now(client, existing.id)
    return Change("deployment", full_name, "updated", schedules.summary())
