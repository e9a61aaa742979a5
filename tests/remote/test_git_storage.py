"""The Git code storage variant (deploy/projects/alpha/prefect.git.yaml) against a private git
server on 127.0.0.1 (`git http-backend` behind HTTPS with Basic auth, tests/remote/git_server.py)
serving a bare copy of the checkout. The token is only in the environment of `deploy remote`:
it goes to a Secret block, and the flow-run container's git_clone (git from the image) uses it.
The served branch has one more commit than the checkout, a line in the flow's file that writes a
marker: the run proves it ran the cloned file, not the image's.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deploy_tools.image.build import OS_PACKAGES_LABEL, image_label
from tests.checkout import clean_env
from tests.remote.conftest import BIN, Copy, Remote, _start
from tests.remote.test_deploy_remote import wait_final
from tests.stack.test_local_stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.stack]

BRANCH = "git-storage-test"
FLOW_FILE = "packages/flows_alpha/src/flows_alpha/pipeline.py"
GIT_FILE = "deploy/projects/alpha/prefect.git.yaml"
# The git variant's own tag: the default deployments' image (TEST_IMAGE) stays as it is.
GIT_IMAGE = "airnub-worker:remote-git-test"
CA_IN_CONTAINER = "/run/airnub-git-ca.pem"
# What the served branch adds to the flow's file: a marker in the run's data volume.
MARKER_LINE = (
    "\n# Added by tests/remote/test_git_storage.py in the served branch only.\n"
    "import pathlib as _marker_pathlib  # noqa: E402\n"
    '_marker_pathlib.Path("/app/data/git-marker.txt").write_text(\n'
    '    "{marker} " + str(_marker_pathlib.Path(__file__).resolve())\n'
    ")\n"
)


@dataclass
class GitServer:
    url: str  # of the repository, without credentials
    token: str
    cert: Path
    log: Path
    marker: str

    def env(self, **extra: str) -> dict[str, str]:
        """git on the host trusting the server's certificate, never prompting."""
        return clean_env(GIT_SSL_CAINFO=str(self.cert), GIT_TERMINAL_PROMPT="0", **extra)


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd,
                   check=True, capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def git_server(checkout: Copy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    folder = tmp_path_factory.mktemp("git-server")
    work = folder / "work"
    _git("clone", "-q", str(checkout.root), str(work), cwd=folder)
    marker = f"cloned-{secrets.token_hex(6)}"
    _git("checkout", "-q", "-b", BRANCH, cwd=work)
    with (work / FLOW_FILE).open("a") as fh:
        fh.write(MARKER_LINE.replace("{marker}", marker))
    _git("commit", "-q", "-am", "marker", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(folder / "repos" / "airnub.git"), cwd=folder)
    token = f"gt-{secrets.token_hex(12)}"
    port = free_port()
    proc = _start("git-server", folder,
                  [sys.executable, "-m", "tests.remote.git_server", "--root", str(folder / "repos"),
                   "--port", str(port), "--cert-dir", str(folder / "cert")],
                  clean_env(GIT_SERVER_TOKEN=token))  # fmt: skip
    server = GitServer(f"https://127.0.0.1:{port}/airnub.git", token, folder / "cert" / "cert.pem",
                       proc.log_file, marker)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.pid() is not None, proc.log_file.read_text()[-2000:]
            try:
                if server.cert.is_file():
                    httpx.get(f"{server.url}/info/refs", verify=str(server.cert), timeout=2)
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, proc.log_file.read_text()[-2000:]
            time.sleep(0.3)
        yield server
    finally:
        proc.stop()


def test_the_repository_is_private(git_server: GitServer, tmp_path: Path) -> None:
    refs = f"{git_server.url}/info/refs?service=git-upload-pack"
    assert httpx.get(refs, verify=str(git_server.cert)).status_code == 401
    wrong = httpx.get(refs, verify=str(git_server.cert), auth=("x", "not-the-token"))
    assert wrong.status_code == 401
    anonymous = subprocess.run(["git", "ls-remote", git_server.url], env=git_server.env(),
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert anonymous.returncode != 0 and BRANCH not in anonymous.stdout
    # what git_clone sends for an access token: the token as the user name
    url = git_server.url.replace("https://", f"https://{git_server.token}@")
    allowed = subprocess.run(["git", "ls-remote", url], env=git_server.env(), capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert allowed.returncode == 0 and f"refs/heads/{BRANCH}" in allowed.stdout


def test_a_token_in_the_repository_url_is_refused(
    git_server: GitServer, checkout: Copy, remote: Remote
) -> None:
    url = git_server.url.replace("https://", f"https://x:{git_server.token}@")
    done = checkout.airnub("deploy", "remote", "--prefect-file", "prefect.git.yaml",
                           ALPHA_GIT_REPOSITORY=url, ALPHA_GIT_BRANCH=BRANCH)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert (
        "deploy/projects/alpha/prefect.git.yaml: pull[1].prefect.deployments.steps.git_clone"
        ".repository: a URL with a user name or password"
    ) in out, out[-3000:]
    assert git_server.token not in out
    assert "git-code" not in [d["name"] for d in remote.api("POST", "/deployments/filter", {})]


def test_a_git_clone_without_git_in_the_image_is_refused(
    git_server: GitServer, checkout: Copy, remote: Remote
) -> None:
    path = checkout.root / GIT_FILE
    good = path.read_text()
    assert "      with_git: true\n" in good
    path.write_text(good.replace("      with_git: true\n", ""))
    try:
        done = checkout.airnub("deploy", "remote", "--prefect-file", "prefect.git.yaml",
                               AIRNUB_IMAGE=GIT_IMAGE, ALPHA_GIT_REPOSITORY=git_server.url,
                               ALPHA_GIT_BRANCH=BRANCH)  # fmt: skip
    finally:
        path.write_text(good)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert (
        f"{GIT_FILE}: pull[1].prefect.deployments.steps.git_clone runs git in the image, but "
        "build has no deploy_tools.remote.steps.build_image with `with_git: true`"
    ) in out, out[-3000:]
    assert "\nimage:" not in out  # stopped before building
    assert "git-code" not in [d["name"] for d in remote.api("POST", "/deployments/filter", {})]


@pytest.fixture(scope="module")
def git_deployment(
    git_server: GitServer, checkout: Copy, remote: Remote
) -> Iterator[dict[str, object]]:
    try:
        done = checkout.airnub("deploy", "remote", "--prefect-file", "prefect.git.yaml",
                               AIRNUB_IMAGE=GIT_IMAGE, ALPHA_GIT_REPOSITORY=git_server.url,
                               ALPHA_GIT_BRANCH=BRANCH, ALPHA_GIT_TOKEN=git_server.token)  # fmt: skip
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-5000:]
        assert "image: built with git: sha256:" in out
        assert "block secret/alpha-git-token: created" in out
        assert git_server.token not in out
        dep = remote.api("GET", "/deployments/name/alpha_pipeline/git-code")
        try:
            yield dict(dep)
        finally:
            remote.api("DELETE", f"/deployments/{dep['id']}")
            block = remote.api(
                "GET", "/block_types/slug/secret/block_documents/name/alpha-git-token"
            )
            remote.api("DELETE", f"/block_documents/{block['id']}")
    finally:
        pushed = f"{checkout.env['AIRNUB_REGISTRY']}/{GIT_IMAGE}"
        subprocess.run(["docker", "image", "rm", "-f", GIT_IMAGE, pushed], capture_output=True)


@pytest.fixture(scope="module")
def git_worker(
    git_deployment: dict[str, object], remote: Remote, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    proc = _start("git-worker", tmp_path_factory.mktemp("git-worker"),
                  [str(BIN / "prefect"), "worker", "start", "--type", "docker",
                   "--pool", "airnub-docker", "--name", "git-storage-test"],
                  remote.client_env(PREFECT_WORKER_QUERY_SECONDS="1"))  # fmt: skip
    try:
        yield
    finally:
        proc.stop()


def test_the_deployment_names_the_block_not_the_token(
    git_deployment: dict[str, object], git_server: GitServer
) -> None:
    steps = git_deployment["pull_steps"]
    assert steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/tmp"}},
        {
            "prefect.deployments.steps.git_clone": {
                "repository": git_server.url,
                "branch": BRANCH,
                "access_token": "{{ prefect.blocks.secret.alpha-git-token }}",
            }
        },
    ]
    assert git_server.token not in json.dumps(git_deployment)
    # the image by digest is the git variant (its label), not the default deployments' image
    image = str(git_deployment["job_variables"]["image"])  # type: ignore[index]
    assert "/airnub-worker@sha256:" in image
    assert image_label(image, OS_PACKAGES_LABEL) == "git"


def test_a_run_completes_from_the_cloned_code(
    git_deployment: dict[str, object], git_worker: None, git_server: GitServer, remote: Remote
) -> None:
    volume = f"airnub-gittest-{secrets.token_hex(4)}"
    job = dict(git_deployment["job_variables"])  # type: ignore[call-overload]
    env = {**job["env"], "GIT_SSL_CAINFO": CA_IN_CONTAINER}  # trust the test server's cert
    served = git_server.log.read_text().count("POST /airnub.git/git-upload-pack 200")
    run = remote.api("POST", f"/deployments/{git_deployment['id']}/create_flow_run",
                     {"job_variables": {"env": env, "auto_remove": False,
                                        "volumes": [f"{volume}:/app/data",
                                                    f"{git_server.cert}:{CA_IN_CONTAINER}:ro"]}})  # fmt: skip
    ids: list[str] = []
    try:
        state = wait_final(remote, run["id"])
        ids = subprocess.run(["docker", "ps", "-a", "-q", "--filter",
                              f"label=io.prefect.flow-run-id={run['id']}"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        logs = remote.api("POST", "/logs/filter",
                          {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200})  # fmt: skip
        assert state["type"] == "COMPLETED", (state, [entry["message"] for entry in logs][-20:])
        # the clone happened now, from the server, and the run loaded the cloned file
        assert git_server.log.read_text().count("POST /airnub.git/git-upload-pack 200") > served
        marker = subprocess.run(
            ["docker", "run", "--rm", "--pull", "never", "--network", "none", "-v",
             f"{volume}:/app/data", str(job["image"]), "cat", "/app/data/git-marker.txt"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert marker == f"{git_server.marker} /tmp/airnub-{BRANCH}/{FLOW_FILE}"
        # the token is in the block only
        assert len(ids) == 1
        inspect = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                 check=True).stdout  # fmt: skip
        assert json.loads(inspect)[0]["Config"]["Image"] == job["image"]
        flow_run = remote.api("GET", f"/flow_runs/{run['id']}")
        for text in (inspect, json.dumps(logs), json.dumps(flow_run), git_server.log.read_text()):
            assert git_server.token not in text
    finally:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
