"""`ComposeStack`: the `Stack` as the containers of `deploy/compose.yaml`.

PostgreSQL, the Prefect server, the process worker and the demo-data server run under one
compose project named after the checkout. This class only drives `docker compose`; what the
containers run is in the compose file and in the env files written here from
`deploy_tools.server_settings` (the same settings as the process mode):

- `.local/compose/server.env`, `.local/compose/worker.env`: no secret in them;
- `.env` (git-ignored): `POSTGRES_PASSWORD`, generated on first use, never printed.

Flows write under `/app/data` in the worker, the checkout's `data/` on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

from deploy_tools import APP_DIR, server_settings
from deploy_tools.local.stack.demo_data import demo_data_folder
from deploy_tools.local.stack.interface import PartLog, PartStatus, StackError
from deploy_tools.local.stack.ports import (
    LoopbackUrls,
    Ports,
    choose_ports,
    ensure_free,
    record_stack,
)
from deploy_tools.settings import AirnubSettings, ProjectSettings
from deploy_tools.setup import values

DATA_MOUNT = f"{APP_DIR}/data"  # where the checkout's data/ is mounted in the worker
SERVER_PORT = 4200  # inside the containers
DATA_PORT = 8000
SERVICES = {"server": "prefect-server", "worker": "worker", "demo-data": "demo-data"}
DB_SERVICE = "postgres"
WAIT_SECONDS = 180
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # compose logs keep the containers' line erases


def project_name(root: Path) -> str:
    """The compose project of the checkout at `root`: its folder name plus a hash of its path.

    Example:
        >>> project_name(Path("/home/me/My Pipelines"))
        'airnub-my-pipelines-0c7a3d7a'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:30] or "checkout"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return f"airnub-{slug}-{digest}"


def _env_file_text(values: dict[str, str], what: str) -> str:
    lines = [f"# {what}: written by `airnub deploy local` from deploy_tools.server_settings on "
             "each start. Do not edit; no secret in here."]  # fmt: skip
    lines += [f"{k}={v}" for k, v in sorted(values.items())]
    return "\n".join(lines) + "\n"


class ComposeStack(LoopbackUrls):
    """The stack of one checkout as a compose project; `note` receives progress lines."""

    worker_sweeps = True  # `airnub stack worker` (deploy_tools.local.worker) sweeps first

    def __init__(
        self,
        settings: AirnubSettings,
        ports: Ports | None = None,
        *,
        build: bool = False,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.ports = ports or choose_ports(settings)
        self.project = settings.compose_project or project_name(settings.project_dir)
        self.build = build
        self.note = note or (lambda _line: None)

    # -- configuration -------------------------------------------------------------------
    @property
    def env_file(self) -> Path:
        """The checkout's `.env`: POSTGRES_PASSWORD (and the user's AIRNUB_* settings)."""
        return self.settings.project_dir / ".env"

    @property
    def state_dir(self) -> Path:
        """`.local/compose/`: the env files the containers read."""
        return self.settings.local_dir / "compose"

    @property
    def data_dir(self) -> Path:
        """The checkout's `data/`, mounted at /app/data in the worker."""
        return self.settings.project_dir / "data"

    def container_data_root(self, project: ProjectSettings) -> str:
        """`project`'s data root as the worker sees it (a project with one).

        Raises:
            StackError: it is not under the checkout's `data/` (nothing else is mounted).
        """
        assert project.data_root is not None, project.name
        try:
            rel = project.data_root.relative_to(self.data_dir)
        except ValueError:
            raise StackError(
                f"compose mode mounts {self.data_dir} at {DATA_MOUNT}; data_root of project "
                f"{project.name!r} ({project.data_root}) is outside it: move it under data/ "
                "or use --mode process"
            ) from None
        return f"{DATA_MOUNT}/{rel.as_posix()}".rstrip("/.")

    def apply_env(self, project: ProjectSettings | None = None) -> dict[str, str]:
        """Paths and URLs as the containers see them: the flows run in the worker container."""
        return values.apply_env(
            self.settings,
            project,
            project_dir=APP_DIR,
            data_root=self.container_data_root,
            demo_data_url=f"http://demo-data:{DATA_PORT}",
        )

    def compose_env(self) -> dict[str, str]:
        """The variables compose.yaml interpolates (besides `.env`'s POSTGRES_PASSWORD)."""
        s = self.settings
        return {
            "AIRNUB_IMAGE": s.image,
            "AIRNUB_POSTGRES_IMAGE": s.postgres_image,
            "AIRNUB_SERVER_PORT": str(self.ports.server),
            "AIRNUB_DATA_PORT": str(self.ports.data),
            "AIRNUB_LOCAL_POOL": s.local_pool,
            "AIRNUB_WORKER_NAME": s.worker_name,
            "STACK_GID": str(os.getgid()),
            "STACK_DATA_DIR": str(self.data_dir),
        }

    def compose_args(self) -> list[str]:
        """`docker compose` with this checkout's files, `.env` and project name."""
        files = [self.settings.compose_file] + [
            self.settings.project_dir / f for f in self.settings.compose_files
        ]
        args = ["docker", "compose"]
        for f in files:
            args += ["-f", str(f)]
        return [*args, "--env-file", str(self.env_file), "-p", self.project]

    def _compose(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.compose_env()}
        try:
            proc = subprocess.run(
                [*self.compose_args(), *args],
                env=env,
                capture_output=capture,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise StackError("`docker` is not installed; use --mode process") from None
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
            raise StackError(f"docker compose {' '.join(args[:2])} failed:\n{tail}")
        return proc

    # -- preparing the host ----------------------------------------------------------------
    def ensure_password(self) -> None:
        """Give `.env` a POSTGRES_PASSWORD unless it has one (the file is made 0600)."""
        path = self.env_file
        text = path.read_text() if path.exists() else ""
        if re.search(r"^\s*POSTGRES_PASSWORD\s*=\s*\S", text, re.MULTILINE):
            return
        if not text:
            text = "# Local settings of the compose stack (git-ignored). See .env.example.\n"
        elif not text.endswith("\n"):
            text += "\n"
        text += f"POSTGRES_PASSWORD={secrets.token_urlsafe(24)}\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        self.note(f"generated a PostgreSQL password into {path} (kept there, never printed)")

    def write_env_files(self) -> None:
        """`.local/compose/server.env` and `worker.env` from `server_settings`."""
        s = self.settings
        self.state_dir.mkdir(parents=True, exist_ok=True)
        server = server_settings.server_env(
            host="0.0.0.0",  # noqa: S104 - inside the container; published on 127.0.0.1
            port=SERVER_PORT,
            database_url=None,
            telemetry=s.telemetry,
        )
        roots = {
            p.data_root_env: self.container_data_root(p)
            for p in s.projects
            if p.data_root_env and p.data_root is not None
        }
        worker = server_settings.worker_env(
            api_url=f"http://{SERVICES['server']}:{SERVER_PORT}/api",
            data_roots=roots,
            telemetry=s.telemetry,
        )
        (self.state_dir / "server.env").write_text(_env_file_text(server, "Prefect server"))
        (self.state_dir / "worker.env").write_text(_env_file_text(worker, "Prefect worker"))

    def prepare_data_dirs(self) -> None:
        """Create each data root; make our folders under data/ group-writable.

        The worker runs as uid 10001 with our gid, so it writes through the group bit and its
        files stay readable (and removable) by us.
        """
        for p in self.settings.projects:
            if p.data_root is not None:
                p.data_root.mkdir(parents=True, exist_ok=True)
        uid = os.getuid()
        for folder, _dirs, _files in os.walk(self.data_dir):
            st = os.stat(folder)
            if (uid in (0, st.st_uid)) and not st.st_mode & 0o020:
                os.chmod(folder, st.st_mode | 0o070)  # noqa: S103 - group only, see above

    def ensure_image(self) -> None:
        """Build the worker image when it is missing, older than HEAD, the tree has changes
        under its inputs, or `build` was asked for (`image.build.ensure_image`)."""
        from deploy_tools.image.build import BuildOptions, ensure_image, outdated_because

        s = self.settings
        why = "--build" if self.build else outdated_because(s.project_dir, s.image)
        if why is None:
            self.note(f"worker image {s.image} is up to date")
            return
        self.note(f"building the worker image {s.image} ({why}; ~1 min the first time)")
        opts = BuildOptions(project=s.project_dir, tag=s.image, base_image=s.base_image,
                            quiet=True, source=s.image_source)  # fmt: skip
        try:
            result, _ = ensure_image(opts, force=True)
        except RuntimeError as exc:
            raise StackError(f"the worker image did not build: {exc}") from None
        self.note(f"built {result.ref} in {result.seconds:.0f} s")

    def check_image(self) -> None:
        """Import every project's entrypoints and demo_data module inside the worker image.

        Raises:
            StackError: one line per project module the image lacks; nothing was started.
        """
        from deploy_tools.image.gate import check_in_image, image_targets

        try:
            problems = check_in_image(self.settings.image, image_targets(self.settings))
        except RuntimeError as exc:
            raise StackError(str(exc)) from None
        if problems:
            raise StackError(
                "the worker image lacks what the deployments need (nothing was started):\n"
                + "\n".join(f"  {line}" for line in problems)
                + "\nrebuild it with `airnub deploy local --build` after `uv lock`"
            )

    # -- lifecycle ------------------------------------------------------------------------
    def running(self) -> dict[str, dict[str, str]]:
        """`docker compose ps` of the project, by service name (containers that exist)."""
        proc = self._compose("ps", "--all", "--format", "json", check=False)
        if proc.returncode != 0:
            return {}
        text = proc.stdout.strip()
        rows = (
            json.loads(text)
            if text.startswith("[")
            else [json.loads(x) for x in text.splitlines() if x]
        )
        return {r["Service"]: r for r in rows}

    def up(self, *, worker: bool = True) -> None:
        """Build the image if needed, start PostgreSQL, the server and demo-data, wait healthy.

        Raises:
            PortInUseError: a port is taken by another program.
            StackError: a service did not become healthy; the message says where to look.
        """
        s = self.settings
        for p in s.projects:  # before anything starts: a bad project stops here
            if p.data_root is not None:
                self.container_data_root(p)
            if p.demo_data:
                demo_data_folder(p.demo_data)
        self.ensure_image()
        self.check_image()
        self.ensure_password()
        self.write_env_files()
        self.prepare_data_dirs()
        ps = self.running()
        if ps.get(SERVICES["server"], {}).get("State") != "running":
            ensure_free(self.ports.server, what="Prefect server",
                        hint="pick another with --server-port / AIRNUB_SERVER_PORT")  # fmt: skip
        if ps.get(SERVICES["demo-data"], {}).get("State") != "running":
            ensure_free(self.ports.data, what="demo-data server",
                        hint="pick another with --data-port / AIRNUB_DATA_PORT")  # fmt: skip
        from deploy_tools.image.build import image_present

        if not image_present(s.postgres_image):
            self.note(
                f"pulling {s.postgres_image} (offline: ci/provision-docker.sh makes a local one; "
                "set AIRNUB_POSTGRES_IMAGE=airnub/postgres:15-bookworm)"
            )
        record_stack(s, self.ports, mode="compose")
        self._up(DB_SERVICE, SERVICES["server"], SERVICES["demo-data"])
        if worker:
            self.start_worker()

    def _up(self, *services: str) -> None:
        proc = self._compose(
            "up", "--detach", "--wait", "--wait-timeout", str(WAIT_SECONDS), *services,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-10:])
            raise StackError(
                f"docker compose up {' '.join(services)} failed:\n{tail}\n"
                "`airnub stack logs` shows each service's log"
            )

    def start_worker(self) -> None:
        """Start the worker container (its pool exists by now); wait until it is healthy."""
        self._up(SERVICES["worker"])

    def stop_worker(self) -> bool:
        """Stop the worker container (its flow runs die with it); True if it was running."""
        if self.running().get(SERVICES["worker"], {}).get("State") != "running":
            return False
        self._compose("stop", SERVICES["worker"])
        return True

    def down(self, *, volumes: bool = False) -> list[str]:
        """Remove the containers (PostgreSQL's volume stays unless `volumes`); names stopped."""
        ps = self.running()
        names = {v: k for k, v in SERVICES.items()} | {DB_SERVICE: DB_SERVICE}
        stopped = [names.get(svc, svc) for svc, row in ps.items() if row.get("State") == "running"]
        if ps or volumes:
            self._compose("down", *(["--volumes"] if volumes else []), "--timeout", "20")
        return stopped

    def status(self) -> list[PartStatus]:
        """State and health of each container (PostgreSQL too)."""
        ps = self.running()
        out = []
        for part, service in (*SERVICES.items(), (DB_SERVICE, DB_SERVICE)):
            row = ps.get(service)
            where = f"docker compose -p {self.project} logs {service}"
            if row is None or row.get("State") != "running":
                state = "not running" if row is None else str(row.get("State"))
                out.append(PartStatus(part, None, False, state, where))
                continue
            health = row.get("Health") or "no healthcheck"
            detail = f"container {row.get('Name')} {health}"
            if part == "server":
                detail += f", {self.api_url}"
            out.append(
                PartStatus(part, _container_pid(row["ID"]), health == "healthy", detail, where)
            )
        return out

    def logs(self, part: str = "all", lines: int = 40) -> list[PartLog]:
        """The last `lines` of each chosen service's container log."""
        known = [*SERVICES, DB_SERVICE]
        aliases = {**{k: k for k in known}, **{v: k for k, v in SERVICES.items()}}
        if part != "all" and part not in aliases:
            raise ValueError(f"unknown part {part!r}: expected {', '.join(known)} or all")
        chosen = known if part == "all" else [aliases[part]]
        out = []
        for name in chosen:
            service = SERVICES.get(name, name)
            where = f"docker compose -p {self.project} logs {service}"
            if lines <= 0:
                out.append(PartLog(name, where, []))
                continue
            proc = self._compose(
                "logs", "--no-color", "--no-log-prefix", "--tail", str(lines), service, check=False
            )
            text = _ANSI.sub("", proc.stdout) if proc.returncode == 0 else None
            out.append(PartLog(name, where, text.splitlines() if text else None))
        return out


def _container_pid(container_id: str) -> int | None:
    proc = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Pid}}", container_id],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return int(proc.stdout.strip()) or None
    except ValueError:
        return None


__all__ = ["ComposeStack", "project_name"]
