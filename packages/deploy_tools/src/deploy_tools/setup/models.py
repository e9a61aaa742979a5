"""The shapes of the files under `deploy/`, as pydantic models (unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Stack = Literal["local", "remote"]


class WorkPoolFile(_Strict):
    """`deploy/work_pools/<name>.yaml`: a work pool; `job_variables` set template defaults."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["process", "docker", "kubernetes"]
    base_job_template: str | dict[str, Any] | None = Field(
        default=None,
        description="A JSON file beside this one holding the whole base job template "
        "(required for kubernetes: prefect-kubernetes is not installed to apply); read into "
        "the dict when the files are loaded.",
    )
    stacks: list[Stack] = Field(
        default_factory=lambda: list[Stack](["local", "remote"]),
        description="Where `setup apply` creates it: the local stack, the remote server "
        "(`deploy remote`), or both.",
    )
    description: str | None = None
    concurrency_limit: int | None = Field(default=None, ge=1)
    job_variables: dict[str, Any] = Field(default_factory=dict)


class VariableFile(_Strict):
    """`deploy/projects/<project>/variables/<name>.yaml`: a Prefect Variable (any JSON value).

    `validate_with` names a callable (`module:function`) that raises ValueError on a bad value.
    """

    name: str = Field(pattern=r"^[a-z0-9_]+$", max_length=255)
    value: Any
    tags: list[str] = Field(default_factory=list)
    validate_with: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")


class BlockFile(_Strict):
    """`deploy/projects/<project>/blocks/<name>.yaml`: a block document.

    `data` may use `{{ $NAME }}` (resolved only when the block is applied). `secret_env` maps a
    field to the environment variable holding its value (read at apply time only);
    `optional_env` sets a (dotted) field only when its variable is set and not empty, over
    `data`'s value: a default is written in `data` (`region_name: us-east-1` and
    `optional_env: {region_name: AWS_REGION}`). `block_refs` maps a field to another block,
    `<type-slug>/<name>`. The file is skipped unless every variable in `when_env` is set.
    """

    type: str = Field(pattern=r"^[a-z0-9-]+$", description="block type slug")
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    data: dict[str, Any] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)
    block_refs: dict[str, str] = Field(default_factory=dict)
    when_env: list[str] = Field(default_factory=list)
    optional_env: dict[str, str] = Field(
        default_factory=dict,
        description="`field.sub: ENV`: set from ENV at apply time when it is set, else left "
        "as `data` has it, or out (e.g. an S3 endpoint for an S3-compatible server; a default "
        "region in `data`). Not for secrets.",
    )


def check_schedule_field(name: str, value: str) -> None:
    """Raise ValueError with Prefect's own message when `value` is not a valid `name`.

    Prefect's schedule classes check cron with croniter (no random/hashed fields), rrule with
    dateutil, and timezones against the IANA names.
    """
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
    from pydantic import ValidationError

    build: dict[str, Callable[[], object]] = {
        "cron": lambda: CronSchedule(cron=value),
        "rrule": lambda: RRuleSchedule(rrule=value),
        "timezone": lambda: CronSchedule(cron="0 0 * * *", timezone=value),
        "anchor_date": lambda: IntervalSchedule(interval=timedelta(hours=1), anchor_date=value),
    }
    try:
        build[name]()
    except ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ValueError(f"not a date and time: {msg}" if name == "anchor_date" else msg) from None


class Schedule(_Strict):
    """One item of a deployment's `schedules:`, as prefect.yaml writes it: exactly one of
    `cron`, `interval` or `rrule`, checked as Prefect checks it (croniter, dateutil, IANA zones).

    An interval without `anchor_date` keeps the anchor the server has (`setup apply`); in a
    remote file (`prefect deploy`, validated with context `{"remote": True}`) every schedule
    needs a `slug` and every interval an `anchor_date`, else each deploy moves or recreates it.
    """

    cron: str | None = None
    interval: timedelta | None = Field(
        default=None, description="seconds, ISO 8601 (`PT1H`) or `HH:MM:SS`"
    )
    rrule: str | None = None
    anchor_date: str | None = Field(
        default=None, description='interval only, quoted: "2026-01-01T00:00:00Z"'
    )
    timezone: str | None = None
    day_or: bool | None = Field(default=None, description="cron only")
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    slug: str | None = Field(default=None, min_length=1)
    replaces: str | None = Field(default=None, description="the slug this schedule renames")

    @field_validator("anchor_date", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, (date, datetime)):
            raise ValueError(
                'a YAML date, not text: quote it (anchor_date: "2026-01-01T00:00:00Z"); '
                "`prefect deploy` refuses an unquoted one"
            )
        return value

    @field_validator("cron", "rrule", "anchor_date", "timezone")
    @classmethod
    def _as_prefect(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            check_schedule_field(str(info.field_name), value)
        return value

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be more than 0 seconds")
        return value

    @model_validator(mode="after")
    def _one_kind(self, info: ValidationInfo) -> Schedule:
        kinds = [k for k in ("cron", "interval", "rrule") if getattr(self, k) is not None]
        if len(kinds) != 1:
            got = f"got {' and '.join(kinds)}" if kinds else "got none"
            raise ValueError(f"exactly one of cron, interval or rrule is needed, {got}")
        if self.anchor_date is not None and self.interval is None:
            raise ValueError("anchor_date is for an interval schedule only")
        if self.day_or is not None and self.cron is None:
            raise ValueError("day_or is for a cron schedule only")
        if (info.context or {}).get("remote"):
            if self.slug is None:
                raise ValueError(
                    "a remote file's schedule needs a slug (slug: daily-ingest): without one, "
                    "every `prefect deploy` deletes and recreates the schedule with new ids"
                )
            if self.interval is not None and self.anchor_date is None:
                raise ValueError(
                    'a remote file\'s interval needs anchor_date (anchor_date: "2026-01-01T00:00:00Z"): '
                    "without one, every `prefect deploy` moves its runs to the deploy time"
                )
        return self


class WorkPoolRef(_Strict):
    """`work_pool:` of a deployment."""

    name: str
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class DeploymentEntry(_Strict):
    """One item of `deployments:` (the subset of prefect.yaml that `setup apply` understands)."""

    name: str
    entrypoint: str = Field(pattern=r"^[^:]+:[\w.]+$")
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    work_pool: WorkPoolRef
    schedules: list[Schedule]  # required: an explicit `[]` keeps `prefect deploy` from prompting
    pull: list[dict[str, Any]] | None = None
    concurrency_limit: int | None = Field(default=None, ge=1)
    enforce_parameter_schema: bool = True
    version: str | None = None

    @field_validator("schedules")
    @classmethod
    def _unique_slugs(cls, schedules: list[Schedule]) -> list[Schedule]:
        slugs = [s.slug for s in schedules if s.slug is not None]
        twice = sorted({s for s in slugs if slugs.count(s) > 1})
        if twice:
            raise ValueError(f"slug {', '.join(twice)} is given to more than one schedule")
        return schedules


class PrefectFile(BaseModel):
    """A prefect.yaml: top-level `build`/`push` and other keys are allowed but not applied."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    pull: list[dict[str, Any]] | None = None
    deployments: list[DeploymentEntry]
