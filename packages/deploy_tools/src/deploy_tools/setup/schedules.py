"""Deployment schedules made true on a server without recreating what did not change.

Prefect's server deletes a deployment's future auto-scheduled runs on every write to the
deployment or one of its schedules, and recreating a schedule gives it a new id (its runs'
idempotency keys name it) and, for an interval without `anchor_date`, a new anchor (the write
time). So `setup apply` writes nothing when nothing changed, keeps each schedule's id (updated
in place, matched by slug or by what it is) and an interval's anchor (from the server when the
file has none), and after any write asks the server to schedule the runs at once
(`POST /deployments/{id}/schedule`, what the scheduler service does in its next loop): the
same start times come back, and none falls in the gap before that loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deploy_tools.setup.models import Schedule


def prefect_schedule(spec: Schedule, anchor: datetime | None = None) -> Any:
    """The Prefect schedule of `spec`, as `prefect deploy` builds it; an interval without
    `anchor_date` gets `anchor` (the server's), else Prefect's default (now)."""
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    kw: dict[str, Any] = {"timezone": spec.timezone} if spec.timezone else {}
    if spec.cron is not None:
        if spec.day_or is not None:
            kw["day_or"] = spec.day_or
        return CronSchedule(cron=spec.cron, **kw)
    if spec.rrule is not None:
        return RRuleSchedule(rrule=spec.rrule, **kw)
    if start := spec.anchor_date or anchor:
        kw["anchor_date"] = start
    return IntervalSchedule(interval=spec.interval or timedelta(0), **kw)


def _as_written(rrule: str, tz: str | None) -> str:
    """`rrule` without the DTSTART line Prefect adds to a rule that has none (a recent anchor
    in phase with 2020-01-01 for a MINUTELY/SECONDLY rule, else 2020-01-01 itself:
    PrefectHQ/prefect#21362), so the file's rule compares equal to the server's."""
    import dateutil.tz
    from prefect._internal.schemas.validators import normalize_rrule_string

    first, _, rest = rrule.partition("\n")
    if not first.startswith("DTSTART:") or "DTSTART" in rest.upper():
        return rrule
    try:  # a floating (local) time, in the schedule's timezone
        at = datetime.strptime(first.removeprefix("DTSTART:") + "+0000", "%Y%m%dT%H%M%S%z")
    except ValueError:
        return rrule
    at = at.replace(tzinfo=dateutil.tz.gettz(tz or "UTC"))
    return rest if normalize_rrule_string(rest, now=at, timezone=tz) == rrule else rrule


def _identity(schedule: Any) -> tuple[Any, ...]:
    """What a schedule is, independent of how its anchor's offset is written."""
    if hasattr(schedule, "cron"):
        return ("cron", schedule.cron, schedule.timezone, schedule.day_or)
    if hasattr(schedule, "rrule"):
        return ("rrule", _as_written(schedule.rrule, schedule.timezone), schedule.timezone)
    return ("interval", schedule.interval.total_seconds(), schedule.anchor_date.timestamp(),
            schedule.timezone)  # fmt: skip


def _kind(schedule: Any) -> str:
    return str(_identity(schedule)[0])


@dataclass
class ScheduleChanges:
    """How a deployment's schedules on the server become the file's (ids are the server's)."""

    update: list[tuple[UUID, Any]] = field(default_factory=list)  # DeploymentScheduleUpdate
    create: list[Any] = field(default_factory=list)  # DeploymentScheduleCreate
    delete: list[UUID] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not (self.update or self.create or self.delete)

    def summary(self) -> str:
        """`schedules: 1 updated, 1 created`, or `schedules kept`."""
        done = [f"{len(ids)} {what}" for what, ids in
                (("updated", self.update), ("created", self.create), ("deleted", self.delete)) if ids]  # fmt: skip
        return f"schedules: {', '.join(done)}" if done else "schedules kept"


def _anchor(spec: Schedule, existing: Any) -> datetime | None:
    if (
        spec.interval is not None
        and spec.anchor_date is None
        and _kind(existing.schedule) == "interval"
    ):
        return existing.schedule.anchor_date  # type: ignore[no-any-return]
    return None


def _pairs(wanted: Sequence[Schedule], existing: Sequence[Any]) -> dict[int, Any]:
    """Which server schedule each file schedule (by index) keeps the id of.

    By slug (or the slug it `replaces`); else a server schedule without a slug that is the
    same schedule; else the next one of the same kind without a slug (updated in place).
    """
    free = list(existing)
    pairs: dict[int, Any] = {}

    def take(i: int, found: Any) -> None:
        pairs[i] = found
        free.remove(found)

    for i, spec in enumerate(wanted):
        targets = [t for t in (spec.replaces, spec.slug) if t]
        found = next((e for t in targets for e in free if e.slug == t), None)
        if found is not None:
            take(i, found)
    for i, spec in enumerate(wanted):
        if i not in pairs:
            found = next((e for e in free if e.slug is None and _identity(e.schedule)
                          == _identity(prefect_schedule(spec, _anchor(spec, e)))), None)  # fmt: skip
            if found is not None:
                take(i, found)
    for i, spec in enumerate(wanted):
        if i not in pairs:
            kind = next(k for k in ("cron", "interval", "rrule") if getattr(spec, k) is not None)
            found = next((e for e in free if e.slug is None and _kind(e.schedule) == kind), None)
            if found is not None:
                take(i, found)
    return pairs


def plan_schedules(wanted: Sequence[Schedule], existing: Sequence[Any]) -> ScheduleChanges:
    """The writes that turn `existing` (the server's `DeploymentSchedule`s) into `wanted`."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentScheduleUpdate

    pairs = _pairs(wanted, existing)
    paired = {e.id for e in pairs.values()}
    changes = ScheduleChanges(delete=[e.id for e in existing if e.id not in paired])
    for i, spec in enumerate(wanted):
        old = pairs.get(i)
        schedule = prefect_schedule(spec, _anchor(spec, old) if old is not None else None)
        if old is None:
            changes.create.append(DeploymentScheduleCreate(
                schedule=schedule, active=spec.active, parameters=spec.parameters, slug=spec.slug
            ))  # fmt: skip
        elif (_identity(old.schedule), old.active, old.parameters or {}, old.slug) != (
            _identity(schedule),
            spec.active,
            spec.parameters,
            spec.slug,
        ):
            changes.update.append((old.id, DeploymentScheduleUpdate(
                schedule=schedule, active=spec.active, parameters=spec.parameters, slug=spec.slug
            )))  # fmt: skip
    return changes


def new_schedules(wanted: Sequence[Schedule]) -> list[Any]:
    """`DeploymentScheduleCreate`s for a deployment the server does not have yet."""
    return plan_schedules(wanted, []).create


async def apply_schedules(client: Any, deployment_id: UUID, changes: ScheduleChanges) -> None:
    """Delete, update in place (ids kept), then create, one schedule at a time."""
    for schedule_id in changes.delete:
        await client.delete_deployment_schedule(deployment_id, schedule_id)
    for schedule_id, update in changes.update:
        await client.update_deployment_schedule(
            deployment_id,
            schedule_id,
            active=update.active,
            schedule=update.schedule,
            parameters=update.parameters,
            slug=update.slug,
        )
    if changes.create:
        await client.create_deployment_schedules(deployment_id, changes.create)


async def schedule_runs_now(client: Any, deployment_id: UUID) -> None:
    """Have the server schedule the deployment's runs now, as its scheduler would in its next
    loop (its own run counts and horizon); the runs' idempotency keys prevent duplicates."""
    await client.request(
        "POST", "/deployments/{id}/schedule", path_params={"id": deployment_id}, json={}
    )


def schedule_deployed(api_url: str, keys: Sequence[tuple[str, str]]) -> int:
    """After `prefect deploy`: schedule the runs of each (entrypoint, name) deployment that has
    a schedule at once (`prefect deploy` deleted the future ones). Returns how many.

    Raises:
        Exception: the Prefect client's.
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from deploy_tools.prefect_api import APPLY_RETRIES, use_api

    async def run() -> int:
        async with get_client() as client:
            deps = await client.read_deployments(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=sorted({name for _, name in keys}))
            ))  # fmt: skip
            scheduled = [
                d
                for d in deps
                if (d.entrypoint, d.name) in set(keys) and d.schedules and not d.paused
            ]
            for dep in scheduled:
                await schedule_runs_now(client, dep.id)
        return len(scheduled)

    with use_api(api_url, retries=APPLY_RETRIES):
        return asyncio.run(run())
