"""`ComposeStack`: the `Stack` as the containers of `deploy/compose.yaml`.

PostgreSQL, the Prefect server, the process worker and the demo-data server run under one
compose project named after the checkout. This class only drives `docker compose`; what the
containers run is in the compose file and in the env files written here from
`deploy_tools.server_settings` (the same settings as the process mode):

- `.local/compose/server.env`, `.local/compose/worker.env`: no secret in them;
- `.local/compose/project.json`: the project and files of the last `up`, which ps, logs,
  stop and down use (they need no `.env`, so they find a stack whose `.env` is gone);
- `.env` (git-ignored): `POSTGRES_PASSWORD`, generated on first use, never printed; a line
  compose would read differently than written is refused (`compose_password`), and the value
  `docker compose config` gives the containers must be that one.

Flows write under `/app/data` in the worker, the checkout's `data/` on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deploy_tools import APP_DIR, server_settings
from deploy_tools.local.stack.compose_password import (
    KEY,
    append_password,
    generate_password,
    password_line,
    read_password,
    volume_mismatch,
)
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
PG_VOLUME = "pgdata-15"  # PostgreSQL's volume in compose.yaml
WAIT_SECONDS = 180
PROJECT_FILE = "project.json"  # under .local/compose/: the project and files of the last up
AUTH_FAILED = "password authentication failed"
# deploy/compose.yaml's services whose CPU limit defaults to COMPOSE_CPU_DEFAULT.
COMPOSE_CPU_LIMITS = ("AIRNUB_POSTGRES_CPUS", "AIRNUB_SERVER_CPUS", "AIRNUB_WORKER_CPUS")
COMPOSE_CPU_DEFAULT = 2
# Commands that only look at or stop containers: they need neither `.env` nor the password.
_LOOKING = {"ps", "logs", "stop", "down"}
_PLACEHOLDER = "unused-by-this-command"
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
        self._warned: set[str] = set()

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
            **self.capped_cpus(),
        }

    def capped_cpus(self) -> dict[str, str]:
        """compose.yaml's 2-CPU limits lowered to a smaller host's count (Docker refuses a
        limit above it), unless the environment or `.env` sets one."""
        cpus = os.cpu_count() or 1
        if cpus >= COMPOSE_CPU_DEFAULT:
            return {}
        text = self.env_file.read_text() if self.env_file.is_file() else ""
        in_dotenv = {line.split("=", 1)[0].removeprefix("export ").strip()
                     for line in text.splitlines() if "=" in line}  # fmt: skip
        return {name: str(cpus) for name in COMPOSE_CPU_LIMITS
                if name not in os.environ and name not in in_dotenv}  # fmt: skip

    def compose_files(self) -> list[Path]:
        """deploy/compose.yaml and the files applied over it (AIRNUB_COMPOSE_FILES)."""
        return [self.settings.compose_file] + [
            self.settings.project_dir / f for f in self.settings.compose_files
        ]

    def compose_args(self, *, looking: bool = False) -> list[str]:
        """`docker compose` with this checkout's files, `.env` and project name.

        `looking` (ps, logs, stop, down): the project and files the last `up` recorded in
        `.local/compose/project.json`, and `.env` only if it exists; they find the stack
        even when `.env` or the AIRNUB_* settings in it are gone.
        """
        project, files = self.project, self.compose_files()
        if looking and (recorded := self.recorded_project()) is not None:
            project, files = recorded
        args = ["docker", "compose"]
        for f in files:
            args += ["-f", str(f)]
        if not looking or self.env_file.exists():
            args += ["--env-file", str(self.env_file)]
        return [*args, "-p", project]

    def recorded_project(self) -> tuple[str, list[Path]] | None:
        """The compose project and files of the last `up` (None: none recorded)."""
        try:
            raw = json.loads((self.state_dir / PROJECT_FILE).read_text())
            return str(raw["project"]), [Path(f) for f in raw["files"]]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def record_project(self) -> None:
        """Remember the project and files of this `up` for ps, logs, stop and down."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        files = [str(f) for f in self.compose_files()]
        (self.state_dir / PROJECT_FILE).write_text(
            json.dumps({"project": self.project, "files": files}, indent=2) + "\n"
        )

    def _env(self, *, looking: bool) -> dict[str, str]:
        env = {**os.environ, **self.compose_env()}
        # `.env` is the password's one source: a POSTGRES_PASSWORD exported in the shell would
        # silently win over it. Commands that create nothing get a placeholder (no `.env`).
        env.pop(KEY, None)
        if looking:
            env[KEY] = _PLACEHOLDER
        return env

    def _compose(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        looking = args[0] in _LOOKING
        try:
            proc = subprocess.run(
                [*self.compose_args(looking=looking), *args],
                env=self._env(looking=looking),
                capture_output=capture,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise StackError("`docker` is not installed; use --mode process") from None
        self._show_warnings(proc.stderr)
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
            raise StackError(f"docker compose {' '.join(args[:2])} failed:\n{tail}")
        return proc

    def _show_warnings(self, stderr: str | None) -> None:
        """Pass compose's own warnings (an unset variable, an ignored key) on to the user."""
        for line in (stderr or "").splitlines():
            if "level=warning" in line or line.startswith("WARN["):
                msg = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
                text = msg.group(1).replace('\\"', '"') if msg else line.strip()
                if text not in self._warned:
                    self._warned.add(text)
                    self.note(f"docker compose: {text}")

    # -- preparing the host ----------------------------------------------------------------
    def ensure_password(self) -> None:
        """Give `.env` a POSTGRES_PASSWORD unless it has one (the file is made 0600).

        Raises:
            PasswordLineError: the line in `.env` would not reach PostgreSQL as written.
        """
        if read_password(self.env_file) is not None:
            return
        append_password(self.env_file, generate_password())
        self.note(
            f"generated a PostgreSQL password into {self.env_file} (kept there, never printed)"
        )

    def pg_volume(self) -> str | None:
        """The name of this project's PostgreSQL volume when it exists."""
        proc = subprocess.run(
            ["docker", "volume", "ls", "-q",
             "--filter", f"label=com.docker.compose.project={self.project}",
             "--filter", f"label=com.docker.compose.volume={PG_VOLUME}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        names = proc.stdout.split() if proc.returncode == 0 else []
        return names[0] if names else None

    def check_password(self) -> None:
        """Before anything starts: `.env`'s password is one compose reads as written, and a kept
        volume is not handed a newly generated one; `docker compose config` agrees.

        Raises:
            PasswordLineError: the line would be changed by compose (the fix is in the message).
            StackError: the volume exists and `.env` has no password, or compose reads
                another value than this module does.
        """
        entry = read_password(self.env_file)
        if entry is None and (volume := self.pg_volume()) is not None:
            raise StackError(volume_mismatch(volume, self.env_file, missing=True))
        self.ensure_password()
        entry = read_password(self.env_file)
        assert entry is not None
        proc = self._compose("config", "--format", "json", timeout=120)
        services = json.loads(proc.stdout).get("services", {})
        seen = {
            "postgres": services.get(DB_SERVICE, {}).get("environment", {}).get(KEY),
            "prefect-server": services.get(SERVICES["server"], {})
            .get("environment", {})
            .get("PREFECT_SERVER_DATABASE_PASSWORD"),
        }
        for service, raw in seen.items():
            # `config` writes a literal $ as $$ (so its output is a valid compose file).
            if raw is None or raw.replace("$$", "$") != entry.value:
                raise StackError(
                    f"{self.env_file} line {entry.line}: docker compose gives {service} another "
                    f"{KEY} than the line says. Write the line as\n  "
                    f"{password_line(entry.value)}\n(nothing was started)"
                )

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
        """`docker compose ps` of the project, by service name (containers that exist).

        Raises:
            StackError: compose cannot list them (the engine does not answer, a bad file).
        """
        text = self._compose("ps", "--all", "--format", "json", timeout=120).stdout.strip()
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
            StackError: a service did not become healthy, or `.env`'s password cannot be used
                as written (or does not open the kept volume); the message says what to do.
        """
        s = self.settings
        for p in s.projects:  # before anything starts: a bad project stops here
            if p.data_root is not None:
                self.container_data_root(p)
            if p.demo_data:
                demo_data_folder(p.demo_data)
        read_password(self.env_file)  # a refused line stops here, before any build
        self.ensure_image()
        self.check_image()
        self.write_env_files()
        self.check_password()
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
        self.record_project()
        self._up(DB_SERVICE, SERVICES["server"], SERVICES["demo-data"])
        if worker:
            self.start_worker()

    def _up(self, *services: str) -> None:
        """`up --wait` of `services`; while it waits, PostgreSQL's log is watched for a
        refused password (a kept volume made with another one): that ends the wait at once."""
        since = time.time() - 1
        cmd = [*self.compose_args(), "up", "--detach", "--wait",
               "--wait-timeout", str(WAIT_SECONDS), *services]  # fmt: skip
        try:
            proc = subprocess.Popen(
                cmd,
                env=self._env(looking=False),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except FileNotFoundError:
            raise StackError("`docker` is not installed; use --mode process") from None
        deadline = time.monotonic() + WAIT_SECONDS + 120
        while True:
            try:
                out, err = proc.communicate(timeout=3)
                break
            except subprocess.TimeoutExpired:
                pass
            if DB_SERVICE in services and self._auth_failed(since):
                proc.terminate()
                proc.communicate(timeout=60)
                raise StackError(self._mismatch(services))
            if time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate(timeout=60)
                break
        self._show_warnings(err)
        if proc.returncode != 0:
            if DB_SERVICE in services and self._auth_failed(since):
                raise StackError(self._mismatch(services))
            tail = "\n".join((err or out or "").strip().splitlines()[-10:])
            raise StackError(
                f"docker compose up {' '.join(services)} failed:\n{tail}\n"
                "`airnub stack logs` shows each service's log"
            )

    def _auth_failed(self, since: float) -> bool:
        """True when PostgreSQL refused a password since `since` (a Unix time)."""
        proc = self._compose(
            "logs", "--no-color", "--since", str(int(since)), DB_SERVICE, check=False, timeout=60
        )  # fmt: skip
        return AUTH_FAILED in proc.stdout + proc.stderr

    def _mismatch(self, services: tuple[str, ...]) -> str:
        """The mismatch message, once the containers just started are stopped (a server that
        cannot log in would restart for ever)."""
        self._compose("stop", "--timeout", "5", *services, check=False, timeout=120)
        volume = self.pg_volume() or f"{self.project}_{PG_VOLUME}"
        return volume_mismatch(volume, self.env_file) + " Its containers were stopped."

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
        """State and health of each container (PostgreSQL too); "unknown" when compose
        cannot list them (with its reason), never "not running" on a guess."""
        project = (self.recorded_project() or (self.project, []))[0]
        try:
            ps = self.running()
        except StackError as exc:
            why = str(exc).replace("\n", " ")
            return [
                PartStatus(part, None, False, f"unknown: {why}", f"docker compose -p {project} ps")
                for part in (*SERVICES, DB_SERVICE)
            ]
        out = []
        for part, service in (*SERVICES.items(), (DB_SERVICE, DB_SERVICE)):
            row = ps.get(service)
            where = f"docker compose -p {project} logs {service}"
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
        project = (self.recorded_project() or (self.project, []))[0]
        out = []
        for name in chosen:
            service = SERVICES.get(name, name)
            where = f"docker compose -p {project} logs {service}"
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
        timeout=60,
        check=False,
    )
    try:
        return int(proc.stdout.strip()) or None
    except ValueError:
        return None


__all__ = ["ComposeStack", "project_name"]
