"""`ProcessStack`: the `Stack` (server, process worker, demo-data server) as local processes.

State lives in `<project>/.local/`: the SQLite database (kept across down/up), `stack.json`
(the ports in use), `run/*.json` (PIDs) and `logs/*.log`. The demo-data server is
`deploy_tools.local.stack.demo_data` (each project's demo data under `/<project>/`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

import deploy_tools.local.stack.database as database
from deploy_tools import server_settings
from deploy_tools.local.stack.database import DamagedDatabaseError
from deploy_tools.local.stack.demo_data import demo_data_folder
from deploy_tools.local.stack.interface import PARTS, PartLog, PartStatus, StackError
from deploy_tools.local.stack.ports import (
    HOST,
    LoopbackUrls,
    Ports,
    choose_ports,
    ensure_free,
    record_database,
    record_stack,
    recorded_database,
    recorded_ports,
)
from deploy_tools.local.stack.processes import ManagedProcess
from deploy_tools.prefect_api import answers
from deploy_tools.settings import AirnubSettings, ProjectSettings
from deploy_tools.setup import values


class ProcessStack(LoopbackUrls):
    """The stack of one checkout as local processes, on 127.0.0.1.

    `ports`: given, else the ports of the last `up` (`.local/stack.json`), else `wanted_ports()`.
    `note` hears warnings (a database emptied since the last `up`/`down`).
    """

    worker_sweeps = True  # `start_worker` ends dead runs and sweeps before the worker starts

    def __init__(
        self,
        settings: AirnubSettings,
        ports: Ports | None = None,
        *,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.note = note or (lambda _line: None)
        state = settings.local_dir
        self.server = ManagedProcess("server", state)
        self.worker = ManagedProcess("worker", state)
        self.data = ManagedProcess("demo-data", state)
        self.ports = ports or self.recorded_ports() or self.wanted_ports()

    @property
    def db_file(self) -> Path:
        """The server's SQLite database (kept across down/up; `down --volumes` deletes it)."""
        return self.settings.local_dir / "prefect.db"

    # -- configuration -------------------------------------------------------------------
    def recorded_ports(self) -> Ports | None:
        """The ports of the last `up`, if any."""
        return recorded_ports(self.settings)

    def wanted_ports(self, server: int | None = None, data: int | None = None) -> Ports:
        """Arguments, then AIRNUB_SERVER_PORT / AIRNUB_DATA_PORT or [tool.airnub], then the last
        used, then the defaults."""
        return choose_ports(self.settings, server, data)

    @property
    def data_url(self) -> str:
        """Base URL of the demo-data server (each project's files under `/<name>/`)."""
        return f"http://{HOST}:{self.ports.data}"

    def apply_env(self, project: ProjectSettings | None = None) -> dict[str, str]:
        """The flows run in the checkout, on this machine: paths and URLs as they are here."""
        return values.apply_env(
            self.settings,
            project,
            project_dir=str(self.settings.project_dir),
            data_root=lambda p: str(p.data_root),
            demo_data_url=self.data_url,
        )

    @property
    def prefect_home(self) -> Path:
        """`PREFECT_HOME` of every part; flow-run processes inherit it from the worker, which
        is how `deploy_tools.local.runs` tells this checkout's flow-run processes."""
        return self.settings.local_dir / "prefect"

    def _base_env(self) -> dict[str, str]:
        env = server_settings.with_telemetry(os.environ, self.settings.telemetry)
        env["PREFECT_HOME"] = str(self.prefect_home)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- lifecycle ------------------------------------------------------------------------
    def up(self, *, worker: bool = True, timeout: float = 90.0) -> None:
        """Start whatever part is not running (server, demo-data, worker) and wait until healthy.

        The database is checked before anything starts (`database.damage`); whatever this
        call started is stopped again when a part does not become healthy.

        Raises:
            PortInUseError: a port is taken by another program.
            DamagedDatabaseError: the server's database is damaged (found before the start, or
                in the log of a server that died starting); nothing is left running.
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
        for p in self.settings.projects:  # before the server starts: a bad module stops here
            if p.demo_data:
                demo_data_folder(p.demo_data)
        if self.server.pid() is None:
            self._check_database()  # before anything starts
        record_stack(self.settings, ports, mode="process")

        started: list[ManagedProcess] = []
        if self.server.pid() is None:
            db = self.db_file
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
            started.append(self.server)
        if self.data.pid() is None:
            self.data.start(
                [
                    sys.executable,
                    "-m",
                    "deploy_tools.local.stack.demo_data",
                    "--bind",
                    HOST,
                    "--port",
                    str(ports.data),
                ],
                env=self._base_env(),
                cwd=self.settings.project_dir,
            )
            started.append(self.data)
        try:
            self._wait(self.server, f"{self.api_url}/health", timeout)
            self._wait(self.data, self.data_url, timeout)
        except StackError:
            for part in started:  # nothing this call started is left running
                part.stop()
            reason = (
                database.damage_in_log(self.server.log_file) if self.server in started else None
            )
            if reason:
                raise DamagedDatabaseError(self._damaged(reason)) from None
            raise
        if worker:
            self.start_worker()

    def start_worker(self) -> None:
        """End what a dead worker left, then start the process worker on the local pool unless
        it runs (it polls every second). Called under the stack lock (deploy local, stack up).

        First, runs of the local pool that no live process runs end Crashed, and flow-run
        processes whose worker is gone (a worker killed alone leaves its child running in its
        own process group: nothing can cancel or watch it any longer) are stopped, their runs
        Crashed (`deploy_tools.local.runs.end_runs_by_process`; runs of a live worker stay).
        Then temp files under the data roots are swept: whatever their age when no flow-run
        process of this checkout is left (no writer can exist), else at the age setting.
        Each run ended and each sweep is told to `note`.

        One worker serves every project: its env holds each project's `<PREFIX>DATA_ROOT`.
        """
        from deploy_tools.local.runs import (
            end_runs_by_process,
            flow_run_processes,
            sweep_temp_files,
        )
        from deploy_tools.local.stack.lock import current_holder

        worker = self.worker.pid()
        holder = current_holder(self.settings.local_dir)
        for run in end_runs_by_process(
            self.api_url,
            self.settings.local_pool,
            self.prefect_home,
            worker_pid=worker,
            found_by=f"airnub {holder.command}" if holder else "the worker's start",
        ):
            self.note(f"flow run {run.name}: {run.previous} → {run.ended_as} ({run.why})")
        no_writer = worker is None and not flow_run_processes(self.prefect_home)
        sweep_temp_files(self.settings, self.note, max_age=0 if no_writer else None)
        if worker is not None:
            return
        roots = {
            p.data_root_env: p.data_root
            for p in self.settings.projects
            if p.data_root_env and p.data_root is not None
        }
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

    def _damaged(self, reason: str) -> str:
        return database.damaged_message(self.db_file, self.settings.relative(self.db_file), reason)

    def _check_database(self) -> None:
        """Refuse a damaged database; warn when it is empty where the last record had data."""
        db = self.db_file
        reason = database.damage(db)
        if reason:
            for part in (self.worker, self.data):  # of an earlier `up`: useless without a server
                part.stop()
            raise DamagedDatabaseError(self._damaged(reason))
        now = database.contents(db)
        last = recorded_database(self.settings)
        before = database.Contents(*last) if last else None
        warning = database.lost_data_warning(self.settings.relative(db), now, before)
        if warning:
            self.note(warning)
        record_database(self.settings, now.size, now.deployments)

    def _wait(self, part: ManagedProcess, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if part.pid() is None:
                raise StackError(f"the {part.name} exited during start-up; see {part.log_file}")
            if answers(url, timeout=1.0):
                return
            time.sleep(0.2)
        raise StackError(
            f"the {part.name} was not healthy after {timeout:.0f} s; see {part.log_file}"
        )

    def stop_worker(self) -> bool:
        """Stop the worker's process group, then every flow-run process of this checkout still
        alive (each leads its own group: the worker's own children, which the worker stops on
        SIGTERM, and orphans of a killed worker); True if the worker ran."""
        from deploy_tools.local.runs import flow_run_processes, stop_process

        stopped = self.worker.stop()
        for proc in flow_run_processes(self.prefect_home).values():
            stop_process(proc)
        return stopped

    def down(self, *, volumes: bool = False) -> list[str]:
        """Stop the worker, demo-data server and server started by `up`; return the names stopped.

        `volumes`: also delete the server's database (`.local/prefect.db`): every deployment,
        block, variable and run is gone. The flows' outputs under data/ stay. Otherwise, once
        the server is stopped, its write-ahead log is folded into the database (`prefect.db`
        alone is a complete copy) and what it holds is recorded for the next `up`.
        """
        stopped = [p.name for p in (self.worker, self.data, self.server) if p.stop()]
        db = self.db_file
        if volumes:
            for suffix in ("", "-wal", "-shm", "-journal"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
            record_database(self.settings, 0, 0)
        elif self.server.pid() is None and db.is_file():
            if not database.checkpoint(db):
                shown = self.settings.relative(db)
                self.note(
                    f"warning: the write-ahead log of {shown} could not be folded into it; "
                    f"a copy must include {shown}-wal"
                )
            now = database.contents(db)
            record_database(self.settings, now.size, now.deployments)
        return stopped

    def status(self) -> list[PartStatus]:
        """Health of each part: process alive, then its own check (HTTP, worker heartbeat)."""
        out = []
        for part, url in ((self.server, f"{self.api_url}/health"), (self.data, self.data_url)):
            pid = part.pid()
            ok = pid is not None and answers(url, timeout=1.0)
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


__all__ = ["Ports", "ProcessStack"]
