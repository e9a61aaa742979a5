"""`LocalStack`: the embedded stack (server, process worker, demo-data server) as local processes.

State lives in `<project>/.local/`: the SQLite database (kept across down/up), `stack.json`
(the ports in use), `run/*.json` (PIDs) and `logs/*.log`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy_tools import server_settings
from deploy_tools.project import Project
from deploy_tools.stack.ports import HOST, PortInUseError, ensure_free
from deploy_tools.stack.processes import ManagedProcess

DEFAULT_SERVER_PORT = 4200
DEFAULT_DATA_PORT = 8765
WORKER_NAME = "airnub-local"


class StackError(RuntimeError):
    """The stack cannot start or is not running."""


@dataclass(frozen=True)
class Ports:
    """The loopback ports of the stack."""

    server: int
    data: int


@dataclass(frozen=True)
class PartStatus:
    """Health of one part of the stack."""

    name: str
    pid: int | None
    healthy: bool
    detail: str
    log: Path


def _env_port(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


class LocalStack:
    """The embedded stack of one project."""

    def __init__(self, project: Project) -> None:
        self.project = project
        state = project.local_dir
        self.server = ManagedProcess("server", state)
        self.worker = ManagedProcess("worker", state)
        self.data = ManagedProcess("demo-data", state)

    # -- configuration -------------------------------------------------------------------
    @property
    def _ports_file(self) -> Path:
        return self.project.local_dir / "stack.json"

    def recorded_ports(self) -> Ports | None:
        """The ports of the last `up`, if any."""
        try:
            raw = json.loads(self._ports_file.read_text())
            return Ports(int(raw["server_port"]), int(raw["data_port"]))
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def ports(self, server: int | None = None, data: int | None = None) -> Ports:
        """Ports to use: arguments, then AIRNUB_SERVER_PORT / AIRNUB_DATA_PORT, then last used, then defaults."""
        last = self.recorded_ports()
        return Ports(
            server
            or _env_port("AIRNUB_SERVER_PORT")
            or (last.server if last else DEFAULT_SERVER_PORT),
            data or _env_port("AIRNUB_DATA_PORT") or (last.data if last else DEFAULT_DATA_PORT),
        )

    @staticmethod
    def api_url(ports: Ports) -> str:
        """The server's API URL."""
        return f"http://{HOST}:{ports.server}/api"

    @staticmethod
    def ui_url(ports: Ports) -> str:
        """The Prefect UI."""
        return f"http://{HOST}:{ports.server}"

    @staticmethod
    def data_url(ports: Ports) -> str:
        """Base URL of the demo-data server."""
        return f"http://{HOST}:{ports.data}"

    def setup_env(self, ports: Ports) -> dict[str, str]:
        """Values the setup files may use as `${NAME}`: project folder, data root, demo-data URL."""
        return {
            "AIRNUB_PROJECT_DIR": str(self.project.root),
            "AIRNUB_DATA_ROOT": str(self.project.data_root),
            "AIRNUB_DEMO_DATA_URL": self.data_url(ports),
        }

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PREFECT_HOME"] = str(self.project.local_dir / "prefect")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- lifecycle ------------------------------------------------------------------------
    def up(self, ports: Ports, *, worker: bool = True, timeout: float = 90.0) -> None:
        """Start whatever part is not running (server, demo-data, worker) and wait until healthy.

        Raises:
            PortInUseError: a port is taken by another program.
            StackError: a part did not become healthy; the message points at its log.
        """
        last = self.recorded_ports()
        if last and last != ports and (self.server.pid() or self.data.pid()):
            raise StackError(
                f"the stack is running on ports {last.server}/{last.data}; "
                "run `airnub stack down` before changing ports"
            )
        hint = "pick another with --server-port / AIRNUB_SERVER_PORT"
        data_hint = "pick another with --data-port / AIRNUB_DATA_PORT"
        if self.server.pid() is None:
            ensure_free(ports.server, what="Prefect server", hint=hint)
        if self.data.pid() is None:
            ensure_free(ports.data, what="demo-data server", hint=data_hint)
        self.project.local_dir.mkdir(parents=True, exist_ok=True)
        self._ports_file.write_text(
            json.dumps({"server_port": ports.server, "data_port": ports.data})
        )

        if self.server.pid() is None:
            db = self.project.local_dir / "prefect.db"
            env = {
                **self._base_env(),
                **server_settings.server_env(
                    host=HOST, port=ports.server, database_url=server_settings.sqlite_url(db)
                ),
            }
            self.server.start(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    HOST,
                    "--port",
                    str(ports.server),
                ],
                env=env,
                cwd=self.project.root,
            )
        if self.data.pid() is None:
            from flows_alpha.demo_data import demo_data_dir

            self.data.start(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    str(ports.data),
                    "--bind",
                    HOST,
                    "--directory",
                    str(demo_data_dir()),
                ],
                env=self._base_env(),
                cwd=self.project.root,
            )
        self._wait(self.server, f"{self.api_url(ports)}/health", timeout)
        self._wait(self.data, self.data_url(ports), timeout)
        if worker:
            self.start_worker(ports)

    def start_worker(self, ports: Ports) -> None:
        """Start the process worker on the local pool unless it runs (it polls every second)."""
        if self.worker.pid() is not None:
            return
        self.project.data_root.mkdir(parents=True, exist_ok=True)
        env = {
            **self._base_env(),
            **server_settings.worker_env(
                api_url=self.api_url(ports), data_root=self.project.data_root
            ),
        }
        self.worker.start(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                server_settings.LOCAL_WORK_POOL,
                "--type",
                "process",
                "--name",
                WORKER_NAME,
            ],
            env=env,
            cwd=self.project.root,
        )

    def _wait(self, part: ManagedProcess, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if part.pid() is None:
                raise StackError(f"the {part.name} exited during start-up; see {part.log_file}")
            if _http_ok(url):
                return
            time.sleep(0.2)
        raise StackError(
            f"the {part.name} was not healthy after {timeout:.0f} s; see {part.log_file}"
        )

    def down(self) -> list[str]:
        """Stop the worker, demo-data server and server started by `up`; return the names stopped."""
        return [p.name for p in (self.worker, self.data, self.server) if p.stop()]

    def status(self) -> list[PartStatus]:
        """Health of each part: process alive, then its own check (HTTP, worker heartbeat)."""
        ports = self.recorded_ports() or self.ports()
        out = []
        for part, url in (
            (self.server, f"{self.api_url(ports)}/health"),
            (self.data, self.data_url(ports)),
        ):
            pid = part.pid()
            ok = pid is not None and _http_ok(url)
            detail = url if ok else ("not running" if pid is None else f"not answering at {url}")
            out.append(PartStatus(part.name, pid, ok, detail, part.log_file))
        pid = self.worker.pid()
        if pid is None:
            out.append(PartStatus("worker", None, False, "not running", self.worker.log_file))
        else:
            seen = _worker_heartbeat_age(self.api_url(ports))
            running_for = time.time() - self.worker.pid_file.stat().st_mtime
            if seen is not None and seen > running_for:  # a beat of the worker before this one
                seen = None
            ok = seen is not None and seen < 60
            detail = (
                f"pool {server_settings.LOCAL_WORK_POOL}, last heartbeat {seen:.0f} s ago"
                if seen is not None
                else "running, not registered with the server yet"
            )
            out.append(PartStatus("worker", pid, ok, detail, self.worker.log_file))
        return out


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_heartbeat_age(api_url: str) -> float | None:
    """Seconds since the local worker's last heartbeat, via the REST API (no client import)."""
    from datetime import UTC, datetime

    try:
        resp = httpx.post(
            f"{api_url}/work_pools/{server_settings.LOCAL_WORK_POOL}/workers/filter",
            json={},
            timeout=2.0,
        )
        resp.raise_for_status()
    except httpx.HTTPError:
        return None
    beats = [w["last_heartbeat_time"] for w in resp.json() if w.get("name") == WORKER_NAME]
    if not beats or beats[0] is None:
        return None
    last = datetime.fromisoformat(beats[0].replace("Z", "+00:00"))
    return (datetime.now(UTC) - last).total_seconds()


__all__ = ["LocalStack", "PartStatus", "PortInUseError", "Ports", "StackError"]
