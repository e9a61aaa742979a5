"""The one settings object of deploy_tools: `AIRNUB_*` environment over `[tool.airnub]`.

Everything project-specific lives in the root `pyproject.toml` (the project folder), so a second
flows package is added by a table entry and its own files under `deploy/`, not by editing code:

```toml
[tool.airnub]
local_pool = "local-process"

[[tool.airnub.projects]]
name = "alpha"
flows_package = "flows_alpha"
env_prefix = "ALPHA_"
data_root = "data/project_alpha_demo_outputs"
demo_deployment = "alpha_pipeline/local"
demo_data = "flows_alpha.demo_data"
```

Environment variables win over the checkout's `.env` (its `AIRNUB_*` lines), which wins over the
table: `AIRNUB_SERVER_PORT=4300`, `AIRNUB_TELEMETRY=1`, `AIRNUB_PROJECT_DIR=/path/to/checkout`;
`DOCKER_HOST` as Docker itself reads it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

TABLE = ("tool", "airnub")
DEPLOY_DIR = "deploy"
REMOTE_DEPLOY_FILE = "prefect.yaml"
LOCAL_DEPLOY_FILE = "prefect.local.yaml"
COMPOSE_FILE = "compose.yaml"
# PostgreSQL 16 on Debian bookworm, the official image's index digest (deploy/compose.yaml).
OFFICIAL_POSTGRES_IMAGE = (
    "postgres:16-bookworm@sha256:efedf3595f1d6f415c08568ba171029bf54052e754cc9f030e3f2412b21f3d67"
)


class ProjectNotFoundError(RuntimeError):
    """No folder holding a `pyproject.toml` with a `[tool.airnub]` table was found."""


class ProjectSettings(BaseModel):
    """One `[[tool.airnub.projects]]` entry: a flows package and what the local stack needs of it.

    Relative paths are resolved against the project folder (`AirnubSettings.project_dir`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Short name, e.g. `alpha`.")
    flows_package: str = Field(
        pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$",
        description="Import name of the flows package, e.g. `flows_alpha`.",
    )
    env_prefix: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]*_$",
        description="Prefix of the pipeline settings, e.g. `ALPHA_`; the worker sets "
        "`<prefix>DATA_ROOT`.",
    )
    data_root: Path = Field(
        default=Path(),
        description="Where the local stack's runs write outputs (default `data/<name>`).",
    )
    demo_deployment: str | None = Field(
        default=None,
        pattern=r"^[^/]+/[^/]+$",
        description="`flow/deployment` that `deploy local` runs to Completed (none: no demo run).",
    )
    demo_data: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$",
        description="Importable package whose folder the demo-data server serves under `/<name>/`.",
    )
    deploy_dir: Path = Field(
        default=Path(),
        description="Its setup files: `prefect.local.yaml`, `variables/`, `blocks/` "
        "(default `deploy/projects/<name>`).",
    )

    @property
    def data_root_env(self) -> str:
        """The environment variable its pipelines read the data root from, e.g. `ALPHA_DATA_ROOT`."""
        return f"{self.env_prefix}DATA_ROOT"

    @property
    def local_deploy_file(self) -> Path:
        """Its deployments on the local stack."""
        return self.deploy_dir / LOCAL_DEPLOY_FILE

    def resolved(self, root: Path) -> ProjectSettings:
        """A copy with defaults filled in and paths made absolute under `root`."""
        data_root = self.data_root if self.data_root != Path() else Path("data") / self.name
        deploy_dir = (
            self.deploy_dir
            if self.deploy_dir != Path()
            else Path(DEPLOY_DIR, "projects", self.name)
        )
        return self.model_copy(
            update={"data_root": root / data_root, "deploy_dir": root / deploy_dir}
        )


def _has_table(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get(TABLE[0], {}).get(TABLE[1]), dict)


def find_project_dir(explicit: Path | str | None = None, start: Path | None = None) -> Path:
    """`explicit` (from `project_dir=` or AIRNUB_PROJECT_DIR), else the nearest folder at or
    above `start` (default: the cwd) whose `pyproject.toml` has a `[tool.airnub]` table.

    Raises:
        ProjectNotFoundError: naming where it looked.
    """
    if explicit:
        root = Path(explicit).resolve()
        if not _has_table(root / "pyproject.toml"):
            raise ProjectNotFoundError(
                f"project folder {explicit}: no pyproject.toml with a [tool.airnub] table"
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _has_table(folder / "pyproject.toml"):
            return folder
    raise ProjectNotFoundError(
        f"no pyproject.toml with a [tool.airnub] table in {here} or above; run from the project "
        "folder or set AIRNUB_PROJECT_DIR"
    )


class AirnubSettings(BaseSettings):
    """Settings of the `airnub` CLI: init arguments > `AIRNUB_*` env > `[tool.airnub]` > defaults.

    Example:
        >>> s = AirnubSettings(project_dir=".")  # doctest: +SKIP
        >>> [p.name for p in s.projects], s.server_port  # doctest: +SKIP
        (['alpha'], 4200)
    """

    model_config = SettingsConfigDict(
        env_prefix="AIRNUB_",
        extra="forbid",
        pyproject_toml_table_header=TABLE,
        frozen=True,
    )

    project_dir: Path = Field(
        default=Path(),
        description="The checkout: holds pyproject.toml, deploy/, and gets .local/ and data/.",
    )
    projects: list[ProjectSettings] = Field(
        default_factory=list, description="Every flows package the local stack deploys."
    )
    local_pool: str = Field(
        default="local-process",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The one process work pool of the local stack (`${AIRNUB_LOCAL_POOL}` in "
        "setup files).",
    )
    worker_name: str = Field(default="airnub-local", description="Name of the process worker.")
    server_port: int = Field(default=4200, ge=1, le=65535, description="Prefect server port.")
    data_port: int = Field(default=8765, ge=1, le=65535, description="Demo-data server port.")
    image: str = Field(default="airnub-worker:latest", description="Worker image `name:tag`.")
    image_source: str = Field(
        default="https://example.invalid/airnub-prefect-starter",
        description="The image's `org.opencontainers.image.source` label.",
    )
    telemetry: bool = Field(default=False, description="`AIRNUB_TELEMETRY=1` keeps Prefect's.")
    base_image: str | None = Field(
        default=None,
        description="Base of the worker image build (default: the digest-pinned one in "
        "Dockerfile.worker); offline machines name the debootstrap one (`airnub image base`).",
    )
    postgres_image: str = Field(
        default=OFFICIAL_POSTGRES_IMAGE,
        description="PostgreSQL image of the compose stack (default: the official one by "
        "digest); offline machines name the Debian one (`airnub image postgres`).",
    )
    compose_project: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Compose project name (default: from the checkout's folder and path).",
    )
    compose_files: list[Path] = Field(
        default_factory=list,
        description="Compose files applied over deploy/compose.yaml (relative to the checkout).",
    )
    docker_host: str = Field(
        default="unix:///var/run/docker.sock",
        validation_alias=AliasChoices("docker_host", "DOCKER_HOST"),
        description="The Docker engine probed by `--mode auto` (env DOCKER_HOST).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Env over the `[tool.airnub]` table of the project folder's own pyproject.toml."""
        # The folder decides which pyproject.toml is read, so it is found first.
        explicit = init_settings().get("project_dir") or env_settings().get("project_dir")
        root = find_project_dir(explicit)
        table = PyprojectTomlConfigSettingsSource(settings_cls, root / "pyproject.toml")
        found = _Fixed(settings_cls, {"project_dir": root})
        # The checkout's `.env` (git-ignored; the compose stack reads it too): AIRNUB_* lines only.
        dotenv = _AirnubDotEnv(settings_cls, env_file=root / ".env")
        return init_settings, found, env_settings, dotenv, table

    @model_validator(mode="after")
    def _resolve_projects(self) -> Self:
        root = self.project_dir.resolve()
        resolved = [p.resolved(root) for p in self.projects]
        seen: set[str] = set()
        for p in resolved:
            if p.name in seen:
                raise ValueError(f"projects: {p.name!r} is listed twice")
            seen.add(p.name)
        object.__setattr__(self, "project_dir", root)
        object.__setattr__(self, "projects", resolved)
        return self

    # -- folders of the checkout -----------------------------------------------------------
    @property
    def deploy_dir(self) -> Path:
        """Setup files shared by every project (work pools) and `prefect.yaml` (remote)."""
        return self.project_dir / DEPLOY_DIR

    @property
    def compose_file(self) -> Path:
        """The compose stack (`--mode compose`)."""
        return self.deploy_dir / COMPOSE_FILE

    @property
    def local_dir(self) -> Path:
        """State of the local stack: database, PIDs, logs (kept across down/up)."""
        return self.project_dir / ".local"

    def project(self, name: str) -> ProjectSettings:
        """The project called `name`.

        Raises:
            KeyError: no such project, naming the known ones.
        """
        for p in self.projects:
            if p.name == name:
                return p
        raise KeyError(f"no project {name!r} in [tool.airnub.projects] (known: {self.names()})")

    def names(self) -> str:
        """The projects' names, comma-separated (for messages)."""
        return ", ".join(p.name for p in self.projects) or "none"


class _AirnubDotEnv(DotEnvSettingsSource):
    """The `AIRNUB_*` lines of a `.env` file; its other lines (POSTGRES_PASSWORD) are compose's."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            k: v for k, v in super()._load_env_vars().items() if k.lower().startswith("airnub_")
        }


class _Fixed(PydanticBaseSettingsSource):
    """A source with fixed values (the project folder found while choosing sources)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def load_settings(project_dir: Path | str | None = None) -> AirnubSettings:
    """The settings of the project at `project_dir`, AIRNUB_PROJECT_DIR, or at/above the cwd.

    Raises:
        ProjectNotFoundError: no project folder.
        pydantic.ValidationError: an invalid value, naming the key.
    """
    if project_dir is None:
        return AirnubSettings()
    return AirnubSettings(project_dir=Path(project_dir))
