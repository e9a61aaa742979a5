"""The one settings object of deploy_tools: `AIRNUB_*` environment over `[tool.airnub]`.

The root `pyproject.toml`'s `[tool.airnub]` table holds only what every project shares (the
local pool, the worker and image names, the ports). Each project describes itself in its own
package: a uv workspace member (`[tool.uv.workspace] members`) whose `pyproject.toml` has a
`[tool.airnub.project]` table is a project, so adding or removing one edits no shared file but
`uv.lock`:

```toml
# packages/flows_alpha/pyproject.toml
[tool.airnub.project]
name = "alpha"
env_prefix = "ALPHA_"                     # its pipeline_core settings; the stack sets ALPHA_DATA_ROOT
data_root = "data/project_alpha_demo_outputs"  # default data/<name>
demo_deployment = "alpha_pipeline/local"  # run to Completed by `deploy local`
demo_data = "flows_alpha.demo_data"       # served by the demo-data server under /alpha/
```

Environment variables win over the checkout's `.env` (its `AIRNUB_*` lines), which wins over the
table: `AIRNUB_SERVER_PORT=4300`, `AIRNUB_TELEMETRY=1`, `AIRNUB_PROJECT_DIR=/path/to/checkout`;
`DOCKER_HOST` as Docker itself reads it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

TABLE = ("tool", "airnub")
PROJECT_TABLE = "[tool.airnub.project]"
DEPLOY_DIR = "deploy"
REMOTE_DEPLOY_FILE = "prefect.yaml"
LOCAL_DEPLOY_FILE = "prefect.local.yaml"
COMPOSE_FILE = "compose.yaml"
#: The worker image's `name:tag` when neither [tool.airnub] `image` nor AIRNUB_IMAGE names one.
WORKER_IMAGE = "airnub-worker:latest"
# The PostgreSQL image is pinned in deploy/compose.yaml only (`${AIRNUB_POSTGRES_IMAGE:-<ref>}`).
_COMPOSE_POSTGRES = re.compile(r"\$\{AIRNUB_POSTGRES_IMAGE:-([^}\s]+)\}")


def compose_postgres_image(compose_file: Path) -> str:
    """The PostgreSQL image `compose_file` falls back to ("" when it names none).

    Example: ``compose_postgres_image(Path("deploy/compose.yaml"))`` →
    ``"postgres:15-bookworm@sha256:…"`` (the official image by its index digest).
    """
    try:
        found = _COMPOSE_POSTGRES.search(compose_file.read_text())
    except FileNotFoundError:
        return ""
    return found.group(1) if found else ""


def shown_path(path: Path, base: Path) -> str:
    """`path` relative to `base` (POSIX) when inside it, else as it is: paths in messages.

    Example:
        >>> shown_path(Path("/co/deploy/x.yaml"), Path("/co")), shown_path(Path("/tmp"), Path("/co"))
        ('deploy/x.yaml', '/tmp')
    """
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


class ProjectNotFoundError(RuntimeError):
    """No folder holding a `pyproject.toml` with a `[tool.airnub]` table was found."""


class ProjectFileError(ValueError):
    """A member's `[tool.airnub.project]` table is invalid; the message names the file and key."""


class ProjectSettings(BaseModel):
    """A project: a workspace member whose `pyproject.toml` has a `[tool.airnub.project]` table.

    `member_dir`, `distribution` and (by default) `flows_package` come from the member itself;
    relative paths are resolved against the checkout (`AirnubSettings.project_dir`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Short name, e.g. `alpha`.")
    member_dir: Path = Field(default=Path(), description="Its package folder (set by discovery).")
    distribution: str = Field(default="", description="Its distribution name (`[project] name`).")
    flows_package: str = Field(
        pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$",
        description="Import name of its package (default: the wheel's package, else the folder).",
    )
    env_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Z0-9_]*_$",
        description="Prefix of its `pipeline_core` settings, e.g. `ALPHA_`; the stack then sets "
        "`<prefix>DATA_ROOT`. Unset for a project that does not use `pipeline_core` settings.",
    )
    data_root: Path | None = Field(
        default=None,
        description="Where the local stack's runs write outputs (with `env_prefix` only; "
        "default `data/<name>`).",
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
        description="Its setup files: `prefect.local.yaml`, `prefect.yaml`, `variables/`, "
        "`blocks/` (default `deploy/projects/<name>`).",
    )

    @model_validator(mode="after")
    def _data_root_needs_prefix(self) -> Self:
        if self.data_root is not None and self.env_prefix is None:
            raise ValueError("data_root is read through env_prefix (<prefix>DATA_ROOT): set both")
        return self

    @property
    def data_root_env(self) -> str | None:
        """The variable its pipelines read the data root from (`ALPHA_DATA_ROOT`), if any."""
        return f"{self.env_prefix}DATA_ROOT" if self.env_prefix else None

    @property
    def local_deploy_file(self) -> Path:
        """Its deployments on the local stack."""
        return self.deploy_dir / LOCAL_DEPLOY_FILE

    @property
    def remote_deploy_file(self) -> Path:
        """Its deployments on a remote server (`deploy:remote`; plain `prefect deploy`)."""
        return self.deploy_dir / REMOTE_DEPLOY_FILE

    def resolved(self, root: Path) -> ProjectSettings:
        """A copy with defaults filled in and paths made absolute under `root`."""
        data_root = None
        if self.env_prefix is not None:
            data_root = root / (self.data_root or Path("data") / self.name)
        deploy_dir = (
            self.deploy_dir
            if self.deploy_dir != Path()
            else Path(DEPLOY_DIR, "projects", self.name)
        )
        return self.model_copy(
            update={
                "data_root": data_root,
                "deploy_dir": root / deploy_dir,
                "member_dir": root / self.member_dir,
            }
        )


def workspace_members(root: Path) -> Iterator[Path]:
    """The uv workspace members of the checkout at `root` (`[tool.uv.workspace]`), sorted.

    Example:
        >>> [m.name for m in workspace_members(Path("."))]  # doctest: +SKIP
        ['deploy_tools', 'flows_alpha', 'pipeline_core']
    """
    doc = tomllib.loads((root / "pyproject.toml").read_text())
    workspace = doc.get("tool", {}).get("uv", {}).get("workspace", {})
    excluded = {p for g in workspace.get("exclude", []) for p in root.glob(g)}
    found = {p for g in workspace.get("members", []) for p in root.glob(g)}
    for member in sorted(found - excluded):
        if (member / "pyproject.toml").is_file():
            yield member


def _member_project(root: Path, member: Path) -> dict[str, Any] | None:
    """The `[tool.airnub.project]` table of `member`, with what the member itself says."""
    where = f"{member.relative_to(root).as_posix()}/pyproject.toml"
    try:
        doc = tomllib.loads((member / "pyproject.toml").read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProjectFileError(f"{where}: not valid TOML: {exc}") from None
    table = doc.get("tool", {}).get("airnub", {}).get("project")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ProjectFileError(f"{where}: {PROJECT_TABLE} must be a table")
    packages = doc.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    wheel = packages.get("wheel", {}).get("packages") or []
    default_package = Path(wheel[0]).name if wheel else member.name
    values = {
        "flows_package": default_package,
        **table,
        "member_dir": member.relative_to(root),
        "distribution": str(doc.get("project", {}).get("name", "")),
    }
    try:
        return ProjectSettings.model_validate(values).model_dump(exclude_unset=True)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(x) for x in e['loc']) or '-'}: {e['msg']}" for e in exc.errors()]
        raise ProjectFileError(f"{where} {PROJECT_TABLE}: " + "; ".join(lines)) from None


def discover_projects(root: Path) -> list[dict[str, Any]]:
    """Every workspace member that declares itself a project, in folder order.

    Raises:
        ProjectFileError: an invalid table, or two members claiming one name (naming both).
    """
    projects: list[dict[str, Any]] = []
    owner: dict[str, Path] = {}
    for member in workspace_members(root):
        project = _member_project(root, member)
        if project is None:
            continue
        name = project["name"]
        if name in owner:
            first, second = (
                f"{m.relative_to(root).as_posix()}/pyproject.toml" for m in (owner[name], member)
            )
            raise ProjectFileError(
                f"project name {name!r} is claimed by both {first} and {second} "
                f"({PROJECT_TABLE} name)"
            )
        owner[name] = member
        projects.append(project)
    return projects


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
        default_factory=list,
        description="Every project: the workspace members with a [tool.airnub.project] table.",
    )
    local_pool: str = Field(
        default="local-process",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The one process work pool of the local stack (`{{ $STACK_POOL }}` in "
        "setup files).",
    )
    worker_name: str = Field(default="airnub-local", description="Name of the process worker.")
    server_port: int = Field(default=4200, ge=1, le=65535, description="Prefect server port.")
    data_port: int = Field(default=8765, ge=1, le=65535, description="Demo-data server port.")
    image: str = Field(default=WORKER_IMAGE, description="Worker image `name:tag`.")
    image_source: str = Field(
        default="",
        description="The image's `org.opencontainers.image.source` label (the root "
        "pyproject.toml sets it; the Nix build reads it there too).",
    )
    telemetry: bool = Field(default=False, description="`AIRNUB_TELEMETRY=1` keeps Prefect's.")
    workspace: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="Names this checkout in the marker of what airnub made on a server (`airnub "
        "setup apply --prune`; default: `[project] name` of the root pyproject.toml).",
    )
    base_image: str | None = Field(
        default=None,
        description="Base of the worker image build (default: the digest-pinned one in "
        "Dockerfile.worker); offline machines name a local one (ci/provision-docker.sh makes "
        "airnub/base:bookworm).",
    )
    postgres_image: str = Field(
        default="",
        description="PostgreSQL image of the compose stack (default: the one deploy/compose.yaml "
        "pins, the official image by digest); offline machines name a local one "
        "(ci/provision-docker.sh makes airnub/postgres:15-bookworm).",
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
        if "projects" in table():
            raise ProjectFileError(
                f"{root / 'pyproject.toml'}: [[tool.airnub.projects]] is no longer read: each "
                f"project says who it is in its own package's pyproject.toml ({PROJECT_TABLE})"
            )
        found = _Fixed(settings_cls, {"project_dir": root, "projects": discover_projects(root)})
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

    @model_validator(mode="after")
    def _postgres_from_compose(self) -> Self:
        if not self.postgres_image:  # unset or empty: the image deploy/compose.yaml pins
            object.__setattr__(self, "postgres_image", compose_postgres_image(self.compose_file))
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

    def relative(self, path: Path) -> str:
        """`path` relative to the checkout (POSIX) when inside it, else as it is (for messages)."""
        return shown_path(path, self.project_dir)

    def project(self, name: str) -> ProjectSettings:
        """The project called `name`.

        Raises:
            KeyError: no such project, naming the known ones.
        """
        for p in self.projects:
            if p.name == name:
                return p
        raise KeyError(f"no project {name!r} in the workspace (known: {self.names()})")

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
        ProjectFileError: a member's `[tool.airnub.project]` table is invalid.
        pydantic.ValidationError: an invalid value, naming the key.
    """
    if project_dir is None:
        return AirnubSettings()
    return AirnubSettings(project_dir=Path(project_dir))
