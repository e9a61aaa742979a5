"""A remote, all on this machine: Debian's docker-registry on 127.0.0.1, a second Prefect server
with basic auth (PREFECT_SERVER_API_AUTH_STRING) standing in for the remote, a demo-data server
for the sources, and a git copy of this checkout to deploy from. Nothing is pulled.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy_tools.local.stack.processes import ManagedProcess
from tests.checkout import REPO, clean_env, git_copy
from tests.compose.conftest import compose_images
from tests.stack.test_local_stack import free_port

BIN = Path(sys.executable).parent
TEST_IMAGE = "airnub-worker:remote-test"
VOLUME = "airnub-alpha-data"  # the named volume alpha's prefect.yaml mounts at /app/data


def _start(name: str, folder: Path, cmd: list[str], env: dict[str, str]) -> ManagedProcess:
    """`cmd` in its own session, its output in `folder`/logs/<name>.log."""
    proc = ManagedProcess(name, folder)
    proc.start(cmd, env=env, cwd=REPO)
    return proc


def _wait(url: str, proc: ManagedProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.pid() is not None, proc.log_file.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer; {proc.log_file.read_text()[-3000:]}")


@dataclass
class Registry:
    """The registry of these tests: host:port and its log (one line per request)."""

    address: str
    log: Path

    def pushes(self) -> int:
        """`docker push`es so far: each asks for the manifest first (HEAD), and a push of what
        the registry already has stops there (no PUT: counting PUTs would miss it)."""
        return len(re.findall(r'"HEAD /v2/\S+/manifests/', self.log.read_text()))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """`docker-registry serve` on 127.0.0.1:<free port>, filesystem storage, no auth."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (run ci/provision-docker.sh)")
    compose_images()  # a Docker engine and the offline images, or skip
    folder = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = _start("registry", folder, [binary, "serve", str(config)], clean_env())
    try:
        _wait(f"http://127.0.0.1:{port}/v2/", proc)
        yield Registry(f"127.0.0.1:{port}", proc.log_file)
    finally:
        proc.stop()


@dataclass
class Remote:
    """The stand-in remote: its API URL and auth string (user:password)."""

    api_url: str
    auth: str
    home: Path

    def client_env(self, **extra: str) -> dict[str, str]:
        return clean_env(PREFECT_API_URL=self.api_url, PREFECT_API_AUTH_STRING=self.auth, **extra)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call with the auth string (a 503, SQLite busy under load, is retried)."""
        user, password = self.auth.split(":", 1)
        for _ in range(10):
            resp = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30,
                                 auth=(user, password))  # fmt: skip
            if resp.status_code != 503:
                break
            time.sleep(1)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def deployments(self) -> list[tuple[str, str]]:
        """(name, updated) of every deployment: unchanged means nothing was deployed."""
        return sorted((d["name"] + ":" + d["entrypoint"], d["updated"])
                      for d in self.api("POST", "/deployments/filter", {}))  # fmt: skip


@pytest.fixture(scope="session")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """A Prefect server on SQLite that wants basic auth (the remote of these tests)."""
    home = tmp_path_factory.mktemp("remote-server")
    port = free_port()
    auth = f"airnub:{secrets.token_urlsafe(16)}"
    env = clean_env(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_AUTH_STRING=auth,
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'remote.db'}",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE="100",
    )
    proc = _start("server", home, [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], env)  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{port}/api/health", proc)
        yield Remote(f"http://127.0.0.1:{port}/api", auth, home)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo-data server on 127.0.0.1 (flow-run containers reach it: host network)."""
    port = free_port()
    proc = _start("demo-data", tmp_path_factory.mktemp("demo-data"),
                  [sys.executable, "-m", "deploy_tools.local.stack.demo_data", "--port", str(port)],
                  clean_env())  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@dataclass
class Copy:
    """A git copy of this checkout and the environment `deploy remote` gets there."""

    root: Path
    env: dict[str, str]

    def run(
        self, *cmd: str, timeout: float = 900, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd], cwd=self.root, env={**self.env, **extra}, capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip

    def airnub(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "airnub"), *args, **extra)


@pytest.fixture(scope="session")
def checkout(
    tmp_path_factory: pytest.TempPathFactory, remote: Remote, registry: Registry, demo_data: str
) -> Copy:
    root = git_copy(tmp_path_factory.mktemp("remote-copy") / "checkout")
    env = remote.client_env(
        **compose_images(),
        AIRNUB_IMAGE=TEST_IMAGE,
        AIRNUB_REGISTRY=registry.address,
        AIRNUB_DEMO_DATA_URL=demo_data,  # each project's sources under /<project>/
        BUILDX_NO_DEFAULT_ATTESTATIONS="1",
        COLUMNS="200",
    )
    return Copy(root, env)


@dataclass
class S3:
    """An S3-compatible server (moto, server mode) on 127.0.0.1 with one bucket."""

    endpoint: str
    bucket: str
    env: dict[str, str]

    def keys(self) -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    import boto3

    port = free_port()
    proc = _start("moto", tmp_path_factory.mktemp("moto"),
                  [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], clean_env())  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "airnub-test-key",
        "AWS_SECRET_ACCESS_KEY": f"secret-{secrets.token_hex(8)}",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "ALPHA_S3_BUCKET": "alpha-data",
        "ALPHA_CODE_BUCKET": "alpha-code",
    }
    try:
        _wait(f"{endpoint}/moto-api/", proc)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        for bucket in ("alpha-data", "alpha-code"):
            client.create_bucket(Bucket=bucket)
        yield S3(endpoint, "alpha-data", env)
    finally:
        proc.stop()


# -- the deploy and a Docker worker, shared by the modules that run flows ----------------------
@pytest.fixture(scope="session")
def deployed(checkout: Copy, remote: Remote, registry: Registry) -> str:
    """`airnub deploy remote` of the copy, once per session: the pushed image reference."""
    pushes = registry.pushes()
    done = checkout.airnub("deploy", "remote")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert registry.pushes() == pushes + 1  # `prefect deploy`'s push step did not push again
    assert remote.auth not in out
    found = re.search(r"Image\s+(\S+@sha256:[0-9a-f]{64})", done.stdout)
    assert found, out
    return found.group(1)


@pytest.fixture(scope="module")
def docker_worker(
    deployed: str, remote: Remote, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A prefect-docker worker of the remote's pool, for one module (stopped at its end)."""
    env = remote.client_env(PREFECT_WORKER_QUERY_SECONDS="1")
    proc = _start("worker", tmp_path_factory.mktemp("docker-worker"),
                  [str(BIN / "prefect"), "worker", "start", "--type", "docker",
                   "--pool", "airnub-docker", "--name", "remote-test"], env)  # fmt: skip
    try:
        yield
    finally:
        proc.stop()
        subprocess.run(["docker", "volume", "rm", "-f", VOLUME], capture_output=True)
