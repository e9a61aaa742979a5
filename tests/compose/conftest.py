"""The compose stack, for real: a git copy of this checkout brought up by `airnub deploy local
--mode compose` (the command under test), inspected and torn down through pytest-docker.

pytest-docker's `docker_services` knows the copy's compose files, env file and project name;
its setup is `airnub deploy local` itself (so `docker_setup` is off) and its clean-up is
`down --volumes`. Nothing is pulled: the worker image is built from the copy (tag
`airnub-worker:compose-test`, the checkout's own `latest` is left alone), PostgreSQL is the
local image `ci/provision-docker.sh` makes (AIRNUB_POSTGRES_IMAGE).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy_tools.local.stack.compose import project_name
from deploy_tools.local.stack.compose_password import password_line
from tests.checkout import REPO, clean_env, git_copy
from tests.stack.test_local_stack import free_port

AIRNUB = Path(sys.executable).parent / "airnub"
TEST_IMAGE = "airnub-worker:compose-test"
OVERRIDE = "tests/compose/compose.test.yaml"
ARTIFACTS = REPO / "test-artifacts"
# A throwaway password with what a database URL must quote and compose's .env rules treat
# specially ($ # ' " \ and spaces): it must reach PostgreSQL and the server byte for byte.
HAND_PICKED_PASSWORD = "$ @ / % ? # ' \" space \\ p@ss:w/rd#50%"


def _image_present(image: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )


def compose_images() -> dict[str, str]:
    """AIRNUB_BASE_IMAGE / AIRNUB_POSTGRES_IMAGE for the test stacks; skip when one is missing."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers (run ci/provision-docker.sh)")
    images = {
        "AIRNUB_BASE_IMAGE": os.environ.get("AIRNUB_BASE_IMAGE", "airnub/base:bookworm"),
        "AIRNUB_POSTGRES_IMAGE": os.environ.get(
            "AIRNUB_POSTGRES_IMAGE", "airnub/postgres:15-bookworm"
        ),
    }
    for name, image in images.items():
        if not _image_present(image):  # never pulled here: no registry answers
            pytest.skip(f"{name}={image} is not in the local store (run ci/provision-docker.sh)")
    return images


@dataclass
class Checkout:
    """A git copy of this checkout with its own ports, compose project and data."""

    root: Path
    env: dict[str, str]
    project: str = ""
    deploy_output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def server_port(self) -> int:
        return int(self.env["AIRNUB_SERVER_PORT"])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/api"

    @property
    def data_root(self) -> Path:
        return self.root / "data" / "project_alpha_demo_outputs"

    def airnub(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`airnub <args>` in the copy (its own settings only)."""
        return subprocess.run(
            [str(AIRNUB), *args],
            cwd=self.root,
            env=clean_env(**self.env, COLUMNS="200"),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`docker compose <args>` on the copy's project (as `airnub` runs it)."""
        cmd = [*shlex.split(self.compose_command()), *self.compose_file_args(), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def compose_files(self) -> list[str]:
        return [str(self.root / "deploy" / "compose.yaml"), str(self.root / OVERRIDE)]

    def compose_file_args(self) -> list[str]:
        args = []
        for f in self.compose_files():
            args += ["-f", f]
        return [*args, "-p", self.project]

    def compose_command(self) -> str:
        """`docker compose` with the copy's env file and the variables `airnub` passes."""
        keep = ("AIRNUB_IMAGE", "AIRNUB_POSTGRES_IMAGE", "AIRNUB_SERVER_PORT", "AIRNUB_DATA_PORT")
        assigns = " ".join(f"{k}={shlex.quote(self.env[k])}" for k in keep)
        data = shlex.quote(str(self.root / "data"))
        env_file = shlex.quote(str(self.root / ".env"))
        return f"env {assigns} STACK_DATA_DIR={data} docker compose --env-file {env_file}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One call of the server's REST API (a 503 under load is retried a few times)."""
        for _ in range(10):
            resp = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
            if resp.status_code != 503:
                break
            time.sleep(1)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def container(self, service: str) -> str:
        """The ID of `service`'s container."""
        out = self.compose("ps", "--all", "-q", service).stdout.split()
        assert len(out) == 1, f"{service}: {out}"
        return out[0]


def make_checkout(dest: Path, images: dict[str, str]) -> Checkout:
    root = git_copy(dest)
    env = {
        **images,
        "AIRNUB_IMAGE": TEST_IMAGE,
        "AIRNUB_SERVER_PORT": str(free_port()),
        "AIRNUB_DATA_PORT": str(free_port()),
        "AIRNUB_COMPOSE_FILES": json.dumps([OVERRIDE]),
        "BUILDX_NO_DEFAULT_ATTESTATIONS": "1",
    }
    # A hand-picked password with the characters a database URL must quote: the server only
    # starts if Prefect builds the URL from its parts (compose.yaml). The generated one is
    # tested in packages/deploy_tools/tests/test_compose_stack_files.py.
    fd = os.open(root / ".env", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password_line(HAND_PICKED_PASSWORD) + "\n")
    return Checkout(root, env, project_name(root.resolve()))


@pytest.fixture(scope="session")
def compose_checkout(tmp_path_factory: pytest.TempPathFactory) -> Checkout:
    return make_checkout(tmp_path_factory.mktemp("compose") / "checkout", compose_images())


# -- pytest-docker: the copy's compose project ----------------------------------------------
@pytest.fixture(scope="session")
def docker_compose_file(compose_checkout: Checkout) -> list[str]:
    return compose_checkout.compose_files()


@pytest.fixture(scope="session")
def docker_compose_project_name(compose_checkout: Checkout) -> str:
    return compose_checkout.project


@pytest.fixture(scope="session")
def docker_compose_command(compose_checkout: Checkout) -> str:
    return compose_checkout.compose_command()


@pytest.fixture(scope="session")
def docker_setup() -> bool:
    return False  # `airnub deploy local --mode compose` is the set-up under test


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down --volumes --timeout 5"]


@pytest.fixture(scope="session")
def compose_stack(docker_services: Any, compose_checkout: Checkout) -> Checkout:
    """The copy's stack after `airnub deploy local --mode compose` (demo run included)."""
    started = time.monotonic()
    done = compose_checkout.airnub("deploy", "local", "--mode", "compose", timeout=1200)
    compose_checkout.deploy_output = done.stdout + done.stderr
    assert done.returncode == 0, compose_checkout.deploy_output[-6000:]
    compose_checkout.extra["deploy_seconds"] = time.monotonic() - started
    compose_checkout.extra["services"] = docker_services
    port = docker_services.port_for("prefect-server", 4200)
    assert port == compose_checkout.server_port
    return compose_checkout
