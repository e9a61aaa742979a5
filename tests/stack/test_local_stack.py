"""The embedded stack end to end: real server, real worker, real HTTP, through the real CLI.

One stack (random free ports, a temp project holding a copy of deploy/ and of the root
pyproject.toml with its [tool.airnub] table, plus a second project added the way a user adds
one: a workspace member whose pyproject.toml has a [tool.airnub.project] table, and its own
deploy/projects/second/) is shared by the tests of this module, which run in order: deploy, re-apply, invalid file, 1,000 tasks, down/up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.checkout import copy_project

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
AIRNUB = Path(sys.executable).parent / "airnub"


@dataclass
class Stack:
    """The shared stack of this module."""

    project: Path
    server_port: int
    data_port: int
    deploy_result: subprocess.CompletedProcess[str]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/api"

    @property
    def data_root(self) -> Path:
        return self.project / "data" / "project_alpha_demo_outputs"

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return airnub(self.project, *args, timeout=timeout)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return post_json(f"{self.api}{path}", body)


def post_json(url: str, body: dict[str, Any] | None = None) -> Any:
    """POST to the stack's API; the JSON answer.

    The server answers 503 when SQLite stays locked under load (as on 2 busy cores);
    Prefect's own client retries those, so this does too, a bounded number of times.
    """
    for _ in range(5):
        resp = httpx.post(url, json=body or {}, timeout=30)
        if resp.status_code != 503:
            break
        time.sleep(1)
    resp.raise_for_status()
    return resp.json()


def free_port() -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airnub(
    project: Path, *args: str, timeout: float = 600, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run the real `airnub` CLI in `project`, isolated from the caller's Prefect/airnub settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}
    return subprocess.run(
        [str(AIRNUB), *args],
        cwd=project,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def processes_under(root: Path) -> list[int]:
    """PIDs of live processes whose cwd is inside `root` (all the stack's processes start there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == str(root) or cwd.startswith(f"{root}/")):
            found.append(int(entry.name))
    return found


def stack_environments(root: Path) -> dict[str, dict[str, str]]:
    """The environment of the stack's server and worker processes, as the kernel holds it."""
    found = {}
    for pid in processes_under(root):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        part = next(
            (p for p in ("server", "worker") if f"{p} start".encode() in b" ".join(cmdline)), None
        )
        if part:
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            found[part] = dict(e.decode().split("=", 1) for e in raw if b"=" in e)
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = tmp_path_factory.mktemp("project")
    copy_project(project)
    fixtures = Path(__file__).parent / "fixture_flows"
    shutil.copytree(fixtures, project / "fixture_flows")
    second = fixtures / "second_project"
    (project / "packages" / "second_fixture").mkdir()
    shutil.copy(second / "pyproject.toml", project / "packages" / "second_fixture")
    shutil.copytree(
        second, project / "deploy" / "projects" / "second", ignore=shutil.ignore_patterns("*.toml")
    )
    server_port, data_port = free_port(), free_port()
    result = airnub(
        project,
        "deploy",
        "local",
        "--mode",
        "process",
        "--server-port",
        str(server_port),
        "--data-port",
        str(data_port),
    )
    s = Stack(project, server_port, data_port, result)
    try:
        yield s
    finally:
        airnub(project, "stack", "down")


def snapshot(s: Stack) -> dict[str, Any]:
    """What setup apply manages, read through the REST API (with each object's `updated`)."""
    return {
        "variables": sorted(
            (v["name"], json.dumps(v["value"]), v["tags"], v["updated"])
            for v in s.post("/variables/filter")
        ),
        "blocks": sorted(
            (b["name"], b["id"], json.dumps(b["data"], sort_keys=True), b["updated"])
            for b in s.post("/block_documents/filter")
        ),
        "deployments": sorted(
            (
                d["name"],
                d["id"],
                d["entrypoint"],
                json.dumps(d["pull_steps"]),
                json.dumps(d["parameter_openapi_schema"], sort_keys=True),
                d["tags"],
            )
            for d in s.post("/deployments/filter")
        ),
        "pools": sorted(
            (p["name"], p["type"], json.dumps(p["base_job_template"], sort_keys=True))
            for p in s.post("/work_pools/filter")
        ),
    }


def test_deploy_local_runs_the_demo_to_completed(stack: Stack) -> None:
    out = stack.deploy_result.stdout
    assert stack.deploy_result.returncode == 0, out + stack.deploy_result.stderr
    assert "alpha_pipeline/local: run" in out
    assert "second_demo/local: run" in out
    assert "Completed" in out
    assert f"http://127.0.0.1:{stack.server_port}" in out
    assert f"Outputs alpha   {stack.data_root}" in out
    second_root = stack.project / "data" / "second"
    assert f"Outputs second  {second_root}" in out

    # One worker, two projects: each run wrote under its own data root, and the second
    # project's files got its own ${STACK_DATA_ROOT}.
    done = json.loads((second_root / "done.json").read_text())
    assert done == {"variable": str(second_root)}
    assert not (stack.data_root / "done.json").exists()

    latest = json.loads((stack.data_root / "manifests" / "latest.json").read_text())
    assert "cities" in json.dumps(latest)
    assert any((stack.data_root / "processed").rglob("*.jsonl"))
    assert (stack.data_root / "processed" / "summary.json").is_file()

    (variable,) = stack.post(
        "/variables/filter", {"variables": {"name": {"any_": ["alpha_sources"]}}}
    )
    assert isinstance(variable["value"], list)  # stored as JSON, not as an encoded string
    assert variable["value"][0]["url"].startswith(f"http://127.0.0.1:{stack.data_port}/")

    runs = stack.post("/flow_runs/filter")
    assert {r["state_type"] for r in runs} == {"COMPLETED"}
    assert {"alpha_pipeline", "alpha_ingest", "alpha_process", "second_demo"} <= {
        f["name"]
        for f in stack.post(
            "/flows/filter", {"flows": {"id": {"any_": [r["flow_id"] for r in runs]}}}
        )
    }
    artifacts = stack.post(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [r["id"] for r in runs]}}}
    )
    assert {a["type"] for a in artifacts} >= {"table", "markdown"}


def test_prefect_explains_every_setting_and_telemetry_is_off(stack: Stack) -> None:
    envs = stack_environments(stack.project)
    assert set(envs) == {"server", "worker"}
    for part, env in envs.items():
        assert env["DO_NOT_TRACK"] == "1", part
        assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false", part
        shown = subprocess.run(
            [str(AIRNUB.parent / "prefect"), "config", "view", "--show-sources"],
            env=env, cwd=stack.project, capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
        # The tuning from [tool.prefect] of the checkout, as in compose mode; the rest from env.
        assert (
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE='100' (from pyproject.toml)"
            in shown
        )
        assert "PREFECT_WORKER_QUERY_SECONDS='1' (from pyproject.toml)" in shown
        assert f"PREFECT_API_URL='{stack.api}' (from env)" in shown or part == "server"


def test_setup_apply_again_is_a_noop(stack: Stack) -> None:
    before = snapshot(stack)
    result = stack.cli("setup", "apply")
    assert result.returncode == 0, result.stderr
    assert "setup: nothing changed" in result.stdout
    assert snapshot(stack) == before


def test_second_deploy_local_restarts_nothing_and_applies_nothing(stack: Stack) -> None:
    run_dir = stack.project / ".local" / "run"
    pids = {p.name: p.read_text() for p in run_dir.glob("*.json")}
    before = snapshot(stack)
    again = stack.cli("deploy", "local", "--mode", "process")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "setup: nothing changed" in again.stdout
    assert "Completed" in again.stdout
    assert {p.name: p.read_text() for p in run_dir.glob("*.json")} == pids
    assert snapshot(stack) == before


def test_invalid_variables_file_applies_nothing(stack: Stack) -> None:
    variables = stack.project / "deploy" / "projects" / "alpha" / "variables"
    good = variables / "alpha_sources.yaml"
    original = good.read_text()
    before = snapshot(stack)
    # A valid change in one file and an invalid second file: neither may reach the server.
    good.write_text(original.replace("tags:\n- alpha\n", "tags:\n- alpha\n- changed\n"))
    (variables / "limits.yaml").write_text(
        "name: alpha_limits\nvalue: {max: 3}\ntags: not-a-list\n"
    )
    try:
        result = stack.cli("setup", "apply")
    finally:
        good.write_text(original)
        (variables / "limits.yaml").unlink()
    assert result.returncode == 1
    assert "nothing was applied" in result.stderr
    assert "variables/limits.yaml: tags: Input should be a valid list" in result.stderr
    assert snapshot(stack) == before


def test_a_thousand_task_runs_are_all_recorded(stack: Stack) -> None:
    shutil.copy(stack.project / "fixture_flows" / "thousand.yaml", stack.project / "deploy")
    applied = stack.cli("setup", "apply", "--file", "thousand.yaml")
    assert applied.returncode == 0, applied.stderr
    assert "deployment thousand_tasks/local: created" in applied.stdout
    ran = stack.cli("demo", "run", "--deployment", "thousand_tasks/local")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (run,) = stack.post("/flow_runs/filter", {"flows": {"name": {"any_": ["thousand_tasks"]}}})
    assert run["state_type"] == "COMPLETED"
    body = {"flow_runs": {"id": {"any_": [run["id"]]}}}
    completed = {**body, "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    # The recorder writes in batches (flush every few seconds): wait for it, then count exactly.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        counts = stack.post("/task_runs/count", body), stack.post("/task_runs/count", completed)
        if counts == (1000, 1000):
            break
        time.sleep(1)
    assert counts == (1000, 1000)
    server_log = (stack.project / ".local" / "logs" / "server.log").read_text()
    assert "dropping message" not in server_log


def test_down_leaves_nothing_and_up_keeps_everything(stack: Stack) -> None:
    before = snapshot(stack)
    runs_before = sorted(r["id"] for r in stack.post("/flow_runs/filter"))
    assert processes_under(stack.project)

    down = stack.cli("stack", "down")
    assert down.returncode == 0, down.stderr
    assert "stopped: worker, demo-data, server" in down.stdout
    assert processes_under(stack.project) == []
    assert not list((stack.project / ".local" / "run").glob("*.json"))

    up = stack.cli("stack", "up", "--mode", "process")
    assert up.returncode == 0, up.stderr
    assert snapshot(stack) == before
    assert sorted(r["id"] for r in stack.post("/flow_runs/filter")) == runs_before
    deadline = time.monotonic() + 60
    while (status := stack.cli("stack", "status")).returncode != 0 and time.monotonic() < deadline:
        time.sleep(2)
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("healthy") == 3

    assert "stopped" in stack.cli("stack", "down").stdout
    assert processes_under(stack.project) == []


def test_the_telemetry_opt_in_reaches_the_server_and_the_worker(stack: Stack) -> None:
    # DO_NOT_TRACK=1 inherited (as hatch's or CI's shell exports it): AIRNUB_TELEMETRY=1 wins.
    up = airnub(stack.project, "stack", "up", "--mode", "process",
                AIRNUB_TELEMETRY="1", DO_NOT_TRACK="1")  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        envs = stack_environments(stack.project)
        assert set(envs) == {"server", "worker"}
        for part, env in envs.items():
            assert "DO_NOT_TRACK" not in env, part
            assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true", part
    finally:
        stack.cli("stack", "down")
    assert processes_under(stack.project) == []


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    copy_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = airnub(
            tmp_path,
            "stack",
            "up",
            "--mode",
            "process",
            "--server-port",
            str(port),
            "--data-port",
            str(free_port()),
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken by another program" in result.stderr
    assert "--server-port" in result.stderr
    assert processes_under(tmp_path) == []
