"""Faults of a remote deploy, with real processes on 127.0.0.1: the remote's Prefect server
killed while `prefect deploy` creates the deployments (by a loopback proxy that counts
deployment writes), then restarted on the same port and database; and a remote that
runs another Prefect version (a tiny HTTP stand-in).

Every wait has a deadline and every subprocess a timeout; what a test starts it stops by PID.
A hang dumps every thread's stack (faulthandler) before the deadline of the CI job.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy_tools.local.stack.processes import ManagedProcess
from tests.checkout import clean_env
from tests.remote.conftest import BIN, Copy, Registry, _start, _wait
from tests.stack.test_local_stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.stack]

HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding",
               "accept-encoding", "upgrade", "date", "server", "content-encoding"}  # fmt: skip
DEPLOYMENT_PATH = re.compile(r"/api/deployments/[0-9a-f-]{36}")


# -- a remote Prefect server that can be killed and started again ------------------------------
@dataclass
class Server:
    """`prefect server start` on 127.0.0.1:`port` with basic auth and a SQLite file in `home`."""

    home: Path
    port: int = field(default_factory=free_port)
    auth: str = field(default_factory=lambda: f"airnub:{secrets.token_urlsafe(16)}")

    def __post_init__(self) -> None:
        self.proc = ManagedProcess("server", self.home)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> float:
        """Start it (same port, same database each time); seconds until /health answers."""
        assert self.proc.pid() is None, "the previous server is still running"
        assert port_free(self.port), f"port {self.port} is still taken"
        env = clean_env(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_API_AUTH_STRING=self.auth,
            PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{self.home / 'remote.db'}",
            PREFECT_UI_ENABLED="false",
        )
        began = time.monotonic()
        self.proc = _start("server", self.home, [str(BIN / "prefect"), "server", "start",
                           "--host", "127.0.0.1", "--port", str(self.port)], env)  # fmt: skip
        _wait(f"{self.api_url}/health", self.proc, timeout=120)
        return time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL its process group (no graceful shutdown: the remote goes away)."""
        pid = self.proc.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)

    def reap(self, timeout: float = 30) -> None:
        """Wait until the killed server is gone for good and its port is free."""
        self.proc.stop(timeout=10)  # reaps the group (SIGKILLs what is left)
        deadline = time.monotonic() + timeout
        while not port_free(self.port):
            assert time.monotonic() < deadline, f"port {self.port} still taken after the kill"
            time.sleep(0.2)
        assert self.proc.pid() is None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        user, password = self.auth.split(":", 1)
        resp = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30,
                             auth=(user, password))  # fmt: skip
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def deployments(self) -> list[dict[str, Any]]:
        """What a deploy made, without ids and times: flow, name, entrypoint, pool, job
        variables (the image by digest), schedules, parameters, pull steps, tags."""
        flows = {f["id"]: f["name"] for f in self.api("POST", "/flows/filter", {})}
        keep = ("name", "entrypoint", "work_pool_name", "job_variables", "parameters",
                "parameter_openapi_schema", "pull_steps", "tags", "description", "paused")  # fmt: skip
        out = []
        for d in self.api("POST", "/deployments/filter", {}):
            shape = {k: d[k] for k in keep}
            shape["flow"] = flows[d["flow_id"]]
            shape["schedules"] = [
                {k: s[k] for k in ("schedule", "active", "max_scheduled_runs")}
                for s in d["schedules"]
            ]
            out.append(shape)
        return sorted(out, key=lambda d: json.dumps(d, sort_keys=True))


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- a loopback proxy that cuts the connection at the n-th deployment ---------------------------
class CuttingProxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream` (an API URL's origin). At the
    `cut_at`-th deployment write (`POST /api/deployments/` creates one, `PATCH
    /api/deployments/<id>` updates one) it calls `on_cut` (kills the server) and from then on
    closes every connection without an answer, until `reopen()`."""

    def __init__(self, upstream: str, cut_at: int, on_cut: Callable[[], None]) -> None:
        self.upstream, self.cut_at, self.on_cut = upstream, cut_at, on_cut
        self.posts = 0
        self.cut = threading.Event()
        self.cutting = False
        self.lock = threading.Lock()
        self.log: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    if (self.command, self.path) == ("POST", "/api/deployments/") or (
                        self.command == "PATCH" and DEPLOYMENT_PATH.fullmatch(self.path)
                    ):
                        proxy.posts += 1
                        if proxy.posts == proxy.cut_at:
                            proxy.on_cut()
                            proxy.cutting = True
                            proxy.cut.set()
                    cutting = proxy.cutting
                proxy.log.append(f"{self.command} {self.path}" + (" (cut)" if cutting else ""))
                if cutting:
                    self.close_connection = True  # no answer at all: the connection drops
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                try:
                    resp = httpx.request(self.command, proxy.upstream + self.path,
                                         headers=headers, content=body, timeout=60)  # fmt: skip
                except httpx.HTTPError:
                    self.close_connection = True
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reopen(self) -> None:
        with self.lock:
            self.cutting = False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def children(pid: int) -> list[str]:
    """The command lines of `pid`'s child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if ppid == pid:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue
    return found


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll `check` until true; seconds it took. Fails naming `what` after `timeout` s."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)
    return time.monotonic() - began


@contextlib.contextmanager
def hang_dump(seconds: float) -> Iterator[None]:
    """Dump every thread's stack to stderr if the block is still running after `seconds`."""
    faulthandler.dump_traceback_later(seconds, exit=False)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[[str], Server]]:
    started: list[Server] = []

    def make(name: str) -> Server:
        server = Server(tmp_path / name)
        started.append(server)
        return server

    yield make
    for server in started:
        server.proc.stop()


@dataclass
class Faulty:
    """What `deploy remote` said when its server was killed at a deployment, and the times."""

    returncode: int
    out: str
    err: str
    figures: dict[str, float]

    def states(self) -> list[str]:
        """The readback's state of each deployment, sorted."""
        return sorted(
            line.split()[0] for line in self.err.splitlines()
            if line.startswith("  ") and line.split()[0] in ("new", "updated", "unchanged", "missing")
        )  # fmt: skip


def deploy_killed_at(checkout: Copy, server: Server, cut_at: int) -> Faulty:
    """`airnub deploy remote` through a proxy that kills `server` at the `cut_at`-th deployment;
    the server is started again (same port and database) and answers again through the proxy
    once `prefect deploy` has given up, so deploy remote reads it back."""
    proxy = CuttingProxy(server.api_url.removesuffix("/api"), cut_at=cut_at, on_cut=server.kill)
    env = {**checkout.env, "PREFECT_API_URL": proxy.api_url, "PREFECT_API_AUTH_STRING": server.auth}
    out_path, err_path = server.home / f"deploy-{cut_at}.out", server.home / f"deploy-{cut_at}.err"
    figures: dict[str, float] = {}
    gave_up: list[float] = []
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        airnub = subprocess.Popen([str(BIN / "airnub"), "deploy", "remote"], cwd=checkout.root,
                                  env=env, stdout=out_file, stderr=err_file,
                                  start_new_session=True)  # fmt: skip

    def watch() -> None:  # when `prefect deploy` (a child of airnub) exits after the cut
        proxy.cut.wait(timeout=900)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and airnub.poll() is None:
            if not [c for c in children(airnub.pid) if "--prefect-file" in c]:
                gave_up.append(time.monotonic())
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with hang_dump(1200):
            began = time.monotonic()
            wait_for("the deployment to cut at", lambda: proxy.cut.is_set() or
                     airnub.poll() is not None, timeout=900)  # fmt: skip
            assert proxy.cut.is_set(), err_path.read_text()[-4000:]
            cut = time.monotonic()
            figures["to the cut"] = cut - began
            server.reap()  # the old server is dead and its port free...
            figures["server restart"] = server.start()  # ...before it starts again, healthy
            watcher.join(timeout=300)
            assert gave_up, "prefect deploy did not give up within 300 s of the cut"
            figures["prefect deploy gives up after the cut"] = gave_up[0] - cut
            reopened = time.monotonic()
            proxy.reopen()  # the server answers again: deploy remote reads it back
            airnub.wait(timeout=300)
            figures["readback after the server answers"] = time.monotonic() - reopened
    finally:
        if airnub.poll() is None:
            os.killpg(airnub.pid, signal.SIGKILL)
            airnub.wait(timeout=30)
        proxy.close()
    out, err = out_path.read_text(), err_path.read_text()
    assert "Traceback" not in out + err and server.auth not in out + err
    assert f"the Prefect server at {proxy.api_url} stopped answering (" in err
    assert "prefect deploy's full output: .local/logs/prefect-deploy-alpha.log" in err
    assert f"the Prefect server at {proxy.api_url} now has, of the 3 deployment(s):" in err
    return Faulty(airnub.returncode, out, err, figures)


@pytest.fixture(scope="module")
def clean_deploy(
    checkout: Copy, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """The deployments a clean `deploy remote` makes on a fresh server."""
    clean = Server(tmp_path_factory.mktemp("clean-server"))
    clean.start()
    try:
        began = time.monotonic()
        done = checkout.airnub("deploy", "remote", timeout=900, PREFECT_API_URL=clean.api_url,
                               PREFECT_API_AUTH_STRING=clean.auth)  # fmt: skip
        print(f"figures (s): clean deploy {time.monotonic() - began:.1f}")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        expected = clean.deployments()
    finally:
        clean.proc.stop()
    assert len(expected) == 3 and {d["name"] for d in expected} == {"docker"}
    image = expected[0]["job_variables"]["image"]
    assert "@sha256:" in image and all(d["job_variables"]["image"] == image for d in expected)
    return expected


def rerun(checkout: Copy, server: Server) -> float:
    """`deploy remote` again, straight to `server`; its duration."""
    began = time.monotonic()
    again = checkout.airnub("deploy", "remote", timeout=900, PREFECT_API_URL=server.api_url,
                            PREFECT_API_AUTH_STRING=server.auth)  # fmt: skip
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    return time.monotonic() - began


def test_a_server_killed_mid_deploy_is_read_back_and_a_rerun_converges(
    checkout: Copy, clean_deploy: list[dict[str, Any]], servers: Callable[[str], Server]
) -> None:
    server = servers("faulty")
    server.start()
    # killed at the second of three deployments of a first deploy
    first = deploy_killed_at(checkout, server, cut_at=2)
    assert first.returncode == 1, first.out + first.err
    assert first.states() == ["missing", "missing", "new"], first.err
    assert "(1 new, 0 updated, 0 unchanged, 2 missing)" in first.err
    assert len(server.deployments()) == 1  # what the report says is what is there
    log = checkout.root / ".local" / "logs" / "prefect-deploy-alpha.log"
    assert "Traceback" in log.read_text()  # the whole story is in the log, not on the terminal
    first.figures["re-run"] = rerun(checkout, server)
    assert server.deployments() == clean_deploy  # converged to what a clean deploy makes
    print(
        "figures (s), killed at the 2nd of 3 new:",
        {k: round(v, 1) for k, v in first.figures.items()},
    )

    # killed at the second deployment of a deploy over existing ones
    second = deploy_killed_at(checkout, server, cut_at=2)
    assert second.returncode == 1, second.out + second.err
    assert second.states() == ["unchanged", "unchanged", "updated"], second.err
    second.figures["re-run"] = rerun(checkout, server)
    assert server.deployments() == clean_deploy
    print("figures (s), killed at the 2nd of 3 existing:",
          {k: round(v, 1) for k, v in second.figures.items()})  # fmt: skip


def test_a_server_killed_at_the_first_deployment_leaves_none_and_says_so(
    checkout: Copy, clean_deploy: list[dict[str, Any]], servers: Callable[[str], Server]
) -> None:
    server = servers("faulty-first")
    server.start()
    faulty = deploy_killed_at(checkout, server, cut_at=1)
    assert faulty.returncode == 1, faulty.out + faulty.err
    assert faulty.states() == ["missing", "missing", "missing"], faulty.err
    assert server.deployments() == []
    faulty.figures["re-run"] = rerun(checkout, server)
    assert server.deployments() == clean_deploy
    print(
        "figures (s), killed at the 1st of 3 new:",
        {k: round(v, 1) for k, v in faulty.figures.items()},
    )


# -- another Prefect version on the remote --------------------------------------------------
class VersionStandIn:
    """A tiny HTTP server on 127.0.0.1: GET /api/admin/version answers `version`, any POST an
    empty list, other GETs 404; each request line is recorded."""

    def __init__(self, version: str) -> None:
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: object) -> None:
                stand_in.requests.append(f"{self.command} {self.path}")
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/admin/version":
                    self.answer(200, version)
                else:
                    self.answer(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.answer(200, [])

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stand_in() -> Iterator[Callable[[str], VersionStandIn]]:
    started: list[VersionStandIn] = []

    def start(version: str) -> VersionStandIn:
        started.append(VersionStandIn(version))
        return started[-1]

    yield start
    for s in started:
        s.server.shutdown()
        s.server.server_close()


def test_a_remote_of_another_major_version_is_refused_before_any_build(
    checkout: Copy, registry: Registry, stand_in: Callable[[str], VersionStandIn]
) -> None:
    from importlib.metadata import version

    remote = stand_in("4.0.0")
    pushes = registry.pushes()
    done = checkout.airnub("deploy", "remote", timeout=300, PREFECT_API_URL=remote.api_url,
                           AIRNUB_IMAGE="airnub-worker:never-built")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"runs Prefect 4.0.0, this checkout's lock has prefect {version('prefect')}: "
            "another major version, refused") in " ".join(done.stderr.split())  # fmt: skip
    assert registry.pushes() == pushes
    assert [r for r in remote.requests if "csrf" not in r] == [
        "GET /api/admin/version", "POST /api/work_pools/filter",
    ]  # fmt: skip
    no_image = subprocess.run(["docker", "image", "inspect", "airnub-worker:never-built"],
                              capture_output=True, timeout=60)  # fmt: skip
    assert no_image.returncode != 0


def test_a_remote_of_another_minor_version_is_a_warning(
    checkout: Copy, stand_in: Callable[[str], VersionStandIn]
) -> None:
    remote = stand_in("3.4.2")
    done = checkout.airnub("deploy", "remote", "--dry-run", timeout=300,
                           PREFECT_API_URL=remote.api_url)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert f"warning: the Prefect server at {remote.api_url} runs Prefect 3.4.2" in err
    assert "would deploy alpha" in done.stdout
