"""The shapes of the files under `deploy/`, as pydantic models (unknown keys are errors)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


class Schedule(_Strict):
    """A cron or interval schedule of a deployment."""

    cron: str | None = None
    interval: float | None = Field(default=None, gt=0, description="seconds")
    timezone: str | None = None
    active: bool = True


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


class PrefectFile(BaseModel):
    """A prefect.yaml: top-level `build`/`push` and other keys are allowed but not applied."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    pull: list[dict[str, Any]] | None = None
    deployments: list[DeploymentEntry]
