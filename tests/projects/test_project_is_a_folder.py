"""A project is a folder: scaffold two projects beside Alpha and run them everywhere.

In a git copy of this checkout, `airnub new project beta` (the pipeline template) and
`airnub new project gamma --template flow`, whose flow is then replaced by a real one (`.map`,
retries, caching, a pydantic parameter), each committed. The copy gets its own environment from
its updated lock (`uv sync --frozen`). Then, in order (the tests of this module share the copy):

1. the new projects' wheels are bit-identical twice; the deploy_tools and pipeline_core suites,
   and the new projects' own tests, pass in the copy;
2. `deploy local --mode compose` runs Alpha's, beta's and gamma's demos to Completed in the
   containers of the copy's image;
3. a project whose module is left out of its wheel on purpose fails the gate inside the image,
   naming it, and nothing is pushed or deployed;
4. `deploy remote` to the stand-in remote deploys all three projects by digest and a Docker
   worker runs beta's and gamma's deployments to Completed;
5. the Nix worker venv, its import check and the image root include beta and gamma (the flake
   evaluated offline with stub inputs);
6. `remove project gamma` returns the tree to the commit before gamma.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy_tools.local.stack.processes import ManagedProcess
from tests.checkout import clean_env, git_copy
from tests.compose.conftest import compose_images
from tests.nix.conftest import Flake
from tests.remote.conftest import BIN, Registry, Remote, _wait
from tests.stack.test_local_stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.stack]

IMAGE = "airnub-worker:projects-test"
IDENT = ["-c", "user.email=t@t", "-c", "user.name=t"]

# A real flow a team brings: a pydantic parameter, `.map`, retries and caching.
GAMMA_FLOW = '''"""Gamma's flow: word counts of a few texts, one cached, retried task run per text."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, task
from prefect.cache_policies import INPUTS
from pydantic import BaseModel, Field


class Corpus(BaseModel):
    texts: list[str] = Field(default=["a b c", "d e", "f"], min_length=1)
    min_length: int = Field(default=1, ge=1)


@task(retries=3, retry_delay_seconds=0, cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
def count_words(text: str, min_length: int) -> int:
    return sum(len(word) >= min_length for word in text.split())


@flow(name="gamma_flow", log_prints=True)
def main(corpus: Corpus | None = None) -> int:
    corpus = corpus or Corpus()
    total = sum(count_words.map(corpus.texts, min_length=corpus.min_length).result())
    print(f"{total} words in {len(corpus.texts)} texts")
    return total
'''

GAMMA_TEST = '''"""Gamma's flow on a real Prefect server, its task as a plain function."""

from __future__ import annotations

import pytest

from flows_gamma.flows import Corpus, count_words, main


def test_count_words_is_a_plain_function() -> None:
    assert count_words.fn("aa b ccc", 2) == 2


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_counts_every_text() -> None:
    state = main(Corpus(texts=["x y", "z"]), return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == 3
'''


@dataclass
class Copy:
    root: Path
    env: dict[str, str]
    gamma_parent: str  # the commit before gamma

    def run(
        self, *cmd: str, timeout: float = 900, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd], cwd=self.root, env={**self.env, **extra},
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip

    def ok(self, *cmd: str, timeout: float = 900, **extra: str) -> str:
        done = self.run(*cmd, timeout=timeout, **extra)
        assert done.returncode == 0, f"{cmd}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
        return done.stdout + done.stderr

    def airnub(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.root / ".venv" / "bin" / "airnub"), *args, **extra)

    def commit(self, message: str) -> str:
        self.ok("git", *IDENT, "add", "-A")
        self.ok("git", *IDENT, "commit", "-qm", message)
        return self.ok("git", "rev-parse", "HEAD").strip()

    def sync(self) -> None:
        uv = shutil.which("uv")
        assert uv, "uv is needed (CI installs it)"
        self.ok(uv, "sync", "--frozen", "--all-packages", "--all-extras", "--quiet")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Copy:
    root = git_copy(tmp_path_factory.mktemp("projects") / "repo")
    env = clean_env(**compose_images(), AIRNUB_IMAGE=IMAGE, BUILDX_NO_DEFAULT_ATTESTATIONS="1",
                    COLUMNS="200")  # fmt: skip
    env.pop("VIRTUAL_ENV", None)
    c = Copy(root, env, "")
    host_airnub = str(BIN / "airnub")
    assert "Project 'beta' created" in c.ok(host_airnub, "new", "project", "beta")
    c.gamma_parent = c.commit("new project beta")
    assert "Project 'gamma' created" in c.ok(
        host_airnub, "new", "project", "gamma", "--template", "flow"
    )
    c.commit("new project gamma --template flow")
    # Bringing a real flow into the scaffold: the flow file and its test, nothing else (its
    # function keeps the scaffold's name, so the deployment entries stay as they are).
    gamma = root / "packages" / "flows_gamma"
    (gamma / "src" / "flows_gamma" / "flows.py").write_text(GAMMA_FLOW)
    (gamma / "tests" / "test_flows.py").write_text(GAMMA_TEST)
    touched = c.ok("git", "status", "--porcelain").splitlines()
    assert len(touched) <= 3, touched
    c.commit("gamma: a real flow")
    c.sync()
    return c


def test_a_project_touches_only_its_folders_and_the_lock(copy: Copy) -> None:
    changed = copy.ok("git", "diff", "--name-only", "HEAD~3", "HEAD").split()
    outside = [f for f in changed if not f.startswith(("packages/flows_beta/",
               "packages/flows_gamma/", "deploy/projects/beta/", "deploy/projects/gamma/"))]  # fmt: skip
    assert outside == ["uv.lock"]


def test_the_new_wheels_are_bit_identical_twice(copy: Copy, tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is needed (CI installs it)"
    for dist, source in (("airnub-flows-beta", "packages/flows_beta/src/flows_beta/flows.py"),
                         ("airnub-flows-gamma", "packages/flows_gamma/src/flows_gamma/flows.py")):  # fmt: skip
        digests = []
        for attempt in ("a", "b"):
            out = tmp_path / f"{dist}-{attempt}"
            copy.ok(uv, "build", "--package", dist, "--wheel", "--out-dir", str(out),
                    SOURCE_DATE_EPOCH="1700000000")  # fmt: skip
            (wheel,) = out.glob("*.whl")
            digests.append(hashlib.sha256(wheel.read_bytes()).hexdigest())
            (copy.root / source).touch()  # a fresh mtime for the second build
        assert digests[0] == digests[1], dist


def test_the_template_suites_pass_in_the_copy(copy: Copy) -> None:
    python = str(copy.root / ".venv" / "bin" / "python")
    suites = ["packages/deploy_tools/tests", "packages/pipeline_core/tests",
              "packages/flows_beta/tests", "packages/flows_gamma/tests"]  # fmt: skip
    # AIRNUB_REQUIRE_ALL: a skip fails in the copy as in CI
    out = copy.ok(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites,
                  timeout=1500, AIRNUB_REQUIRE_ALL="1")  # fmt: skip
    assert re.search(r"\d+ passed", out), out[-3000:]
    assert " failed" not in out and " error" not in out, out[-3000:]


def test_compose_runs_every_project_demo_to_completed(copy: Copy) -> None:
    server, data = free_port(), free_port()
    try:
        done = copy.airnub("deploy", "local", "--mode", "compose", "--server-port", str(server),
                           "--data-port", str(data))  # fmt: skip
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-6000:]
        for demo in ("alpha_pipeline/local", "beta_pipeline/local", "gamma_flow/local"):
            assert re.search(rf"{demo}: run \S+ Completed", out), (demo, out[-4000:])
    finally:
        copy.airnub("stack", "down", "--volumes", "--yes")
    summary = copy.root / "data" / "project_beta_outputs" / "processed" / "summary.json"
    totals = json.loads(summary.read_text())["totals"]
    assert (totals["rows_in"], totals["rows_out"]) == (3, 2)


@pytest.fixture(scope="module")
def remote_env(copy: Copy, remote: Remote, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:  # fmt: skip
    """The copy's own demo-data server (it serves beta's files too) and the remote's settings."""
    port = free_port()
    proc = ManagedProcess("demo-data", tmp_path_factory.mktemp("projects-demo-data"))
    proc.start([str(copy.root / ".venv" / "bin" / "python"), "-m", "deploy_tools.local.stack.demo_data",
                "--port", str(port)], env=copy.env, cwd=copy.root)  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{port}/", proc)
        yield {
            "PREFECT_API_URL": remote.api_url,
            "PREFECT_API_AUTH_STRING": remote.auth,
            "AIRNUB_REGISTRY": registry.address,
            "AIRNUB_DEMO_DATA_URL": f"http://127.0.0.1:{port}",
        }
    finally:
        proc.stop()


def test_a_module_left_out_of_the_image_fails_the_gate_in_it(
    copy: Copy, remote: Remote, registry: Registry, remote_env: dict[str, str]
) -> None:
    host_airnub = str(BIN / "airnub")
    copy.ok(host_airnub, "new", "project", "delta", "--template", "flow")
    pyproject = copy.root / "packages" / "flows_delta" / "pyproject.toml"
    # A packaging mistake: the wheel leaves the flow module out (the editable install has it).
    pyproject.write_text(pyproject.read_text().replace(
        'packages = ["src/flows_delta"]',
        'packages = ["src/flows_delta"]\nexclude = ["src/flows_delta/flows.py"]',
    ))  # fmt: skip
    copy.commit("delta, whose wheel lacks its flows")
    try:
        copy.sync()
        before, pushes = remote.deployments(), registry.pushes()
        done = copy.airnub("deploy", "remote", AIRNUB_IMAGE=f"{IMAGE}-delta", **remote_env)
        out = done.stdout + done.stderr
        assert done.returncode == 1, out[-4000:]
        assert "entrypoints: all" in out  # the host's gate passed: only the image lacks it
        line = next(x for x in out.splitlines() if "does not import in" in x)
        assert "project delta: flows_delta.flows:main" in line
        assert "deploy/projects/delta/prefect.yaml" in line and "flows_delta.flows" in line
        assert not [x for x in out.splitlines() if "does not import in" in x and "delta" not in x]
        assert "nothing was pushed or deployed" in out
        assert remote.deployments() == before and registry.pushes() == pushes
    finally:
        copy.ok(host_airnub, "remove", "project", "delta")
        copy.commit("remove delta")
        copy.sync()


def test_deploy_remote_deploys_every_project_and_runs_them(
    copy: Copy, remote: Remote, remote_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    done = copy.airnub("deploy", "remote", **remote_env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    image_ref = re.search(r"Image\s+(\S+@sha256:[0-9a-f]{64})", done.stdout)
    assert image_ref, out
    deps = {
        d["entrypoint"]: d for d in remote.api("POST", "/deployments/filter", {})
        if d["name"] == "docker" and d["entrypoint"].startswith(("flows_beta", "flows_gamma"))
    }  # fmt: skip
    assert sorted(deps) == ["flows_beta.flows:ingest", "flows_beta.flows:pipeline",
                            "flows_beta.flows:process", "flows_gamma.flows:main"]  # fmt: skip
    assert {d["job_variables"]["image"] for d in deps.values()} == {image_ref.group(1)}
    sources = remote.api("GET", "/variables/name/beta_sources")["value"]
    assert sources[0]["url"] == f"{remote_env['AIRNUB_DEMO_DATA_URL']}/beta/sample.csv"

    worker = ManagedProcess("worker", tmp_path_factory.mktemp("projects-worker"))
    worker.start([str(BIN / "prefect"), "worker", "start", "--type", "docker", "--pool",
                  "airnub-docker", "--name", "projects-test"],
                 env=clean_env(PREFECT_API_URL=remote.api_url, PREFECT_WORKER_QUERY_SECONDS="1",
                               PREFECT_API_AUTH_STRING=remote.auth), cwd=copy.root)  # fmt: skip
    try:
        runs = {}
        for name in ("beta_pipeline/docker", "gamma_flow/docker"):
            dep = remote.api("GET", f"/deployments/name/{name}")
            runs[name] = remote.api("POST", f"/deployments/{dep['id']}/create_flow_run", {})["id"]
        deadline = time.monotonic() + 420
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {
                n: remote.api("GET", f"/flow_runs/{i}")["state"]["type"] for n, i in runs.items()
            }
            if all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in states.values()):
                break
            time.sleep(2)
        assert states == {"beta_pipeline/docker": "COMPLETED", "gamma_flow/docker": "COMPLETED"}
    finally:
        worker.stop()
        subprocess.run(["docker", "volume", "rm", "-f", "airnub-beta-data"], capture_output=True)


def test_the_nix_image_has_every_project(copy: Copy, stubbed_flake: Flake) -> None:
    flake = dataclasses.replace(stubbed_flake, root=copy.root)
    spec = flake.eval_json("packages.x86_64-linux.worker-venv.stub.spec")
    assert {"airnub-flows-alpha", "airnub-flows-beta", "airnub-flows-gamma"} <= set(spec)
    script = flake.eval_json("checks.x86_64-linux.worker-venv-imports.stub.script")
    assert "'airnub-flows-beta'" in script and "'airnub-flows-gamma'" in script
    files = flake.eval_json("packages.x86_64-linux.worker-image.stub.layerFiles")
    for member in ("flows_alpha", "flows_beta", "flows_gamma"):
        assert f"/app/packages/{member}/pyproject.toml" in files


def test_remove_project_returns_the_tree_to_the_commit_before_it(copy: Copy) -> None:
    out = copy.ok(str(BIN / "airnub"), "remove", "project", "gamma")
    assert "Project 'gamma' removed" in out
    assert copy.ok("git", "diff", "--stat", copy.gamma_parent).strip() == ""
    untracked = copy.ok("git", "ls-files", "--others", "--exclude-standard").split()
    assert untracked == []
