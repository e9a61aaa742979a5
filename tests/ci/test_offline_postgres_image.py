"""CI's offline PostgreSQL stand-in (ci/offline_images.py) behaves like the official one.

Needs a Docker engine and the image already loaded (ci/provision-docker.sh makes it; tests never
pull or build it). One container with a named volume serves the connection tests; every
container and volume made here is removed by name. ~10 s.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from deploy_tools.image.build import image_present

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

IMAGE = os.environ.get("AIRNUB_POSTGRES_IMAGE", "airnub/postgres:15-bookworm")
USER, PASSWORD, DB = "airnub", "s3cret pass'word", "app"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``docker args...`` with text output (never pulls: every `run` passes --pull never)."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=60
    )


@pytest.fixture(scope="module")
def postgres_image() -> str:
    """The loaded PostgreSQL image; the tests skip (fail in CI) without an engine or the image."""
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"no Docker engine answers (run ci/provision-docker.sh): {proc.stderr[-200:]}")
    if not image_present(IMAGE):
        pytest.skip(f"{IMAGE} not loaded (run ci/provision-docker.sh); tests never pull")
    return IMAGE


@dataclass(frozen=True)
class Server:
    """A running container of the image."""

    name: str

    @property
    def port(self) -> int:
        """The host port of 5432 (asked each time: a restart may publish another one)."""
        out = docker("port", self.name, "5432/tcp").stdout
        return int(out.splitlines()[0].rsplit(":", 1)[1])

    def wait_ready(self, timeout: float = 30) -> float:
        """Wait until the real server (TCP, not init's socket-only one) accepts connections."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            ready = docker(
                "exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432", check=False
            )
            if ready.returncode == 0:
                return time.monotonic() - start
            state = docker("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()
            if state not in {"running", "created", "restarting"}:
                pytest.fail(f"container {state}:\n{self.logs()}")
            time.sleep(0.2)
        pytest.fail(f"not ready after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        proc = docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    async def connect(self, password: str = PASSWORD) -> asyncpg.Connection:
        return await asyncpg.connect(
            host="127.0.0.1", port=self.port, user=USER, password=password, database=DB, timeout=10
        )


@pytest.fixture(scope="module")
def server(postgres_image: str) -> Iterator[Server]:
    """One container, a named volume as PGDATA, 5432 published on 127.0.0.1 (a free port)."""
    name = f"airnub-pg-test-{uuid4().hex[:10]}"
    docker("volume", "create", name)
    try:
        docker(
            "run", "-d", "--pull", "never", "--name", name, "-p", "127.0.0.1::5432",
            "-v", f"{name}:/var/lib/postgresql/data", "-e", f"POSTGRES_PASSWORD={PASSWORD}",
            "-e", f"POSTGRES_USER={USER}", "-e", f"POSTGRES_DB={DB}", postgres_image,
        )  # fmt: skip
        srv = Server(name)
        srv.wait_ready()
        yield srv
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", name, check=False)


def test_image_config_matches_the_official_interface(postgres_image: str) -> None:
    fmt = (
        "{{json .Config.Cmd}} {{json .Config.ExposedPorts}} {{.Config.StopSignal}} {{.Config.User}}"
    )
    out = docker("image", "inspect", "--format", fmt, postgres_image).stdout.split()
    assert out == ['["postgres"]', '{"5432/tcp":{}}', "SIGINT"]


async def test_password_login_and_data_survive_a_restart(server: Server) -> None:
    conn = await server.connect()
    try:
        assert conn.get_server_version().major == 15
        row = await conn.fetchrow(
            "SELECT current_user, current_database(), current_setting('password_encryption'),"
            " current_setting('lc_ctype'), pg_encoding_to_char(encoding) AS enc"
            " FROM pg_database WHERE datname = current_database()"
        )
        assert tuple(row) == (USER, DB, "scram-sha-256", "C.UTF-8", "UTF8")
        await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        await conn.execute("INSERT INTO notes VALUES (1, 'kept across restarts')")
    finally:
        await conn.close()

    docker("restart", server.name)  # SIGINT: fast shutdown, then the same volume again
    server.wait_ready()
    assert "received fast shutdown request" in server.logs()
    assert server.logs().count("PostgreSQL init done") == 1  # no second initdb
    conn = await server.connect()
    try:
        assert await conn.fetchval("SELECT body FROM notes WHERE id = 1") == "kept across restarts"
    finally:
        await conn.close()


async def test_wrong_password_is_refused(server: Server) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await server.connect(password="not-the-password")


def test_server_runs_as_postgres_with_pg_isready_on_path(server: Server) -> None:
    status = docker("exec", server.name, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Name"] == "postgres"
    assert fields["Uid"].split()[0] == "999"
    which = docker("exec", server.name, "sh", "-c", "command -v pg_isready").stdout.strip()
    assert which == "/usr/lib/postgresql/15/bin/pg_isready"
    # Host connections need a password even from inside the container.
    hba = docker("exec", server.name, "sh", "-c", 'grep "^host" "$PGDATA/pg_hba.conf"').stdout
    assert {line.split()[-1] for line in hba.splitlines()} == {"scram-sha-256"}


def test_password_file_and_default_user(postgres_image: str, tmp_path: Path) -> None:
    # POSTGRES_PASSWORD_FILE (compose secrets) read once, before and after dropping root.
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    secret.chmod(0o644)
    name = f"airnub-pg-test-{uuid4().hex[:10]}"
    try:
        docker(
            "run", "-d", "--pull", "never", "--name", name, "-v", f"{secret}:/run/secrets/pw:ro",
            "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw", postgres_image,
        )  # fmt: skip
        Server(name).wait_ready()
        sql = "SELECT current_user || '@' || current_database()"
        out = docker(
            "exec", "-e", "PGPASSWORD=from-a-file", name,
            "psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", sql,
        ).stdout  # fmt: skip
        assert out.strip() == "postgres@postgres"
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_refuses_to_start_without_a_password(postgres_image: str) -> None:
    name = f"airnub-pg-test-{uuid4().hex[:10]}"
    try:
        docker("run", "-d", "--pull", "never", "--name", name, postgres_image)
        code = docker("wait", name).stdout.strip()
        logs = docker("logs", name).stderr
        assert code == "1", logs
        assert "POSTGRES_PASSWORD is not set" in logs
    finally:
        docker("rm", "-f", "-v", name, check=False)  # -v: the image's anonymous PGDATA volume
