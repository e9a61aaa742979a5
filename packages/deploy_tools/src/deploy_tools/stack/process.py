"""`ProcessStack`: the `Stack` (server, process worker, demo-data server) as local processes.

State lives in `<project>/.local/`: the SQLite database (kept across down/up), `stack.json`
(the ports in use), `run/*.json` (PIDs), `logs/*.log` and `demo-data/` (one link per project
to its demo-data folder, served as `/<project>/`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy_tools import server_settings
from deploy_tools.settings import AirnubSettings, ProjectSettings
from deploy_tools.stack.interface import PARTS, PartLog, PartStatus, StackError
from deploy_tools.stack.ports import HOST, ensure_free
from deploy_tools.stack.processes import ManagedProcess


@dataclass(frozen=True)
class Ports:
    """The loopback ports of the stack."""

    server: int
    data: int


def demo_data_folder(module: str) -> Path:
    """The folder of the importable package `module` (a project's demo data).

    Raises:
        StackError: it does not import or is not a package folder.
    """
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StackError(f"demo_data {module!r} does not import: {exc}") from exc
    if mod.__file__ is None:
        raise StackError(f"demo_data {module!r} is not a package with a folder")
    return Path(mod.__file__).parent


class ProcessStack:
    """The stack of one checkout as local processes, on 127.0.0.1.

    `ports`: given, else the ports of the last `up` (`.local/stack.json`), else `wanted_ports()`.
    """

    def __init__(self, settings: AirnubSettings, ports: Ports | None = None) -> None:
        self.settings = settings
        state = settings.local_dir
        self.server = ManagedProcess("server", state)
        self.worker = ManagedProcess("worker", state)
        self.data = ManagedProcess("demo-data", state)
        self.ports = ports or self.recorded_ports() or self.wanted_ports()

    # -- configuration -------------------------------------------------------------------
    @property
    def _ports_file(self) -> Path:
        return self.settings.local_dir / "stack.json"

    def recorded_ports(self) -> Ports | None:
        """The ports of the last `up`, if any."""
        try:
            raw = json.loads(self._ports_file.read_text())
            return Ports(int(raw["server_port"]), int(raw["data_port"]))
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def wanted_ports(self, server: int | None = None, data: int | None = None) -> Ports:
        """Arguments, then AIRNUB_SERVER_PORT / AIRNUB_DATA_PORT or [tool.airnub], then the last
        used, then the defaults."""
        s = self.settings
        last = self.recorded_ports()

        def pick(arg: int | None, key: str, recorded: int | None) -> int:
            if arg:
                return arg
            if key in s.model_fields_set or recorded is None:
                return int(getattr(s, key))
            return recorded

        return Ports(
            pick(server, "server_port", last.server if last else None),
            pick(data, "data_port", last.data if last else None),
        )

    @property
    def api_url(self) -> str:
        """The server's API URL."""
        return f"http://{HOST}:{self.ports.server}/api"

    @property
    def ui_url(self) -> str:
        """The Prefect UI."""
        return f"http://{HOST}:{self.ports.server}"

    @property
    def data_url(self) -> str:
        """Base URL of the demo-data server (each project's files under `/<name>/`)."""
        return f"http://{HOST}:{self.ports.data}"

    def apply_env(self, project: ProjectSettings | None = None) -> dict[str, str]:
        """Project folder and pool; with `project`, also its data root and demo-data URL."""
        env = {
            "AIRNUB_PROJECT_DIR": str(self.settings.project_dir),
            "AIRNUB_LOCAL_POOL": self.settings.local_pool,
        }
        if project is not None:
            env["AIRNUB_PROJECT"] = project.name
            env["AIRNUB_DATA_ROOT"] = str(project.data_root)
            env["AIRNUB_DEMO_DATA_URL"] = f"{self.data_url}/{project.name}"
        return env

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PREFECT_HOME"] = str(self.settings.local_dir / "prefect")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _link_demo_data(self) -> Path:
        """`.local/demo-data/<project>` -> each project's demo-data folder (refreshed each time)."""
        served = self.settings.local_dir / "demo-data"
        served.mkdir(parents=True, exist_ok=True)
        wanted = {
            p.name: demo_data_folder(p.demo_data) for p in self.settings.projects if p.demo_data
        }
        for link in served.iterdir():
            if link.is_symlink() and link.name not in wanted:
                link.unlink()
        for name, folder in wanted.items():
            link = served / name
            if link.is_symlink() and link.resolve() == folder.resolve():
                continue
            if link.is_symlink():
                link.unlink()
            link.symlink_to(folder, target_is_directory=True)
        return served

    # -- lifecycle ------------------------------------------------------------------------
    def up(self, *, worker: bool = True, timeout: float = 90.0) -> None:
        """Start whatever part is not running (server, demo-data, worker) and wait until healthy.

        Raises:
            PortInUseError: a port is taken by another program.
            StackError: a part did not become healthy; the message points at its log.
        """
        ports = self.ports
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
        self.settings.local_dir.mkdir(parents=True, exist_ok=True)
        served = self._link_demo_data()  # before the server starts: a bad module stops here
        self._ports_file.write_text(
            json.dumps({"server_port": ports.server, "data_port": ports.data})
        )

        if self.server.pid() is None:
            db = self.settings.local_dir / "prefect.db"
            env = {
                **self._base_env(),
                **server_settings.server_env(
                    host=HOST,
                    port=ports.server,
                    database_url=server_settings.sqlite_url(db),
                    telemetry=self.settings.telemetry,
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
                cwd=self.settings.project_dir,
            )
        if self.data.pid() is None:
            self.data.start(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    str(ports.data),
                    "--bind",
                    HOST,
                    "--directory",
                    str(served),
                ],
                env=self._base_env(),
                cwd=self.settings.project_dir,
            )
        self._wait(self.server, f"{self.api_url}/health", timeout)
        self._wait(self.data, self.data_url, timeout)
        if worker:
            self.start_worker()

    def start_worker(self) -> None:
        """Start the process worker on the local pool unless it runs (it polls every second).

        One worker serves every project: its env holds each project's `<PREFIX>DATA_ROOT`.
        """
        if self.worker.pid() is not None:
            return
        roots = {p.data_root_env: p.data_root for p in self.settings.projects}
        for root in roots.values():
            root.mkdir(parents=True, exist_ok=True)
        env = {
            **self._base_env(),
            **server_settings.worker_env(
                api_url=self.api_url, data_roots=roots, telemetry=self.settings.telemetry
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
                self.settings.local_pool,
                "--type",
                "process",
                "--name",
                self.settings.worker_name,
            ],
            env=env,
            cwd=self.settings.project_dir,
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

    def stop_worker(self) -> bool:
        """Stop the worker's process group (its flow-run subprocesses too); True if it ran."""
        return self.worker.stop()

    def down(self) -> list[str]:
        """Stop the worker, demo-data server and server started by `up`; return the names stopped."""
        return [p.name for p in (self.worker, self.data, self.server) if p.stop()]

    def status(self) -> list[PartStatus]:
        """Health of each part: process alive, then its own check (HTTP, worker heartbeat)."""
        out = []
        for part, url in ((self.server, f"{self.api_url}/health"), (self.data, self.data_url)):
            pid = part.pid()
            ok = pid is not None and _http_ok(url)
            detail = url if ok else ("not running" if pid is None else f"not answering at {url}")
            out.append(PartStatus(part.name, pid, ok, detail, str(part.log_file)))
        pid = self.worker.pid()
        if pid is None:
            out.append(PartStatus("worker", None, False, "not running", str(self.worker.log_file)))
        else:
            pool, name = self.settings.local_pool, self.settings.worker_name
            seen = _worker_heartbeat_age(self.api_url, pool, name)
            running_for = time.time() - self.worker.pid_file.stat().st_mtime
            if seen is not None and seen > running_for:  # a beat of the worker before this one
                seen = None
            ok = seen is not None and seen < 60
            detail = (
                f"pool {pool}, last heartbeat {seen:.0f} s ago"
                if seen is not None
                else "running, not registered with the server yet"
            )
            out.append(PartStatus("worker", pid, ok, detail, str(self.worker.log_file)))
        return out

    def logs(self, part: str = "all", lines: int = 40) -> list[PartLog]:
        """The last `lines` of each chosen part's file under `.local/logs/`."""
        chosen = [p for p in (self.server, self.worker, self.data) if part in ("all", p.name)]
        if not chosen:
            raise ValueError(f"unknown part {part!r}: expected {', '.join(PARTS)} or all")
        out = []
        for p in chosen:
            text = p.log_file.read_text(errors="replace") if p.log_file.exists() else None
            tail = None if text is None else (text.splitlines()[-lines:] if lines > 0 else [])
            out.append(PartLog(p.name, str(p.log_file), tail))
        return out


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_heartbeat_age(api_url: str, pool: str, worker: str) -> float | None:
    """Seconds since the worker's last heartbeat, via the REST API (no client import)."""
    from datetime import UTC, datetime

    try:
        resp = httpx.post(
            f"{api_url}/work_pools/{pool}/workers/filter",
            json={},
            timeout=2.0,
        )
        resp.raise_for_status()
    except httpx.HTTPError:
        return None
    beats = [w["last_heartbeat_time"] for w in resp.json() if w.get("name") == worker]
    if not beats or beats[0] is None:
        return None
    last = datetime.fromisoformat(beats[0].replace("Z", "+00:00"))
    return (datetime.now(UTC) - last).total_seconds()


__all__ = ["Ports", "ProcessStack", "demo_data_folder"]
