"""`deploy:local --mode compose` against the real stack: PostgreSQL, server, worker and demo data
in containers; a real browser on the UI; load; a PostgreSQL restart; a killed worker; a second
checkout beside it; down/up and `--volumes`.

The tests share one stack (session fixture `compose_stack`) and run in file order: the ones
that stop parts of it come last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from deploy_tools import server_settings
from deploy_tools.local.stack.compose_password import password_line
from tests.compose.conftest import (
    ARTIFACTS,
    HAND_PICKED_PASSWORD,
    Checkout,
    compose_images,
    make_checkout,
)

pytestmark = [pytest.mark.docker, pytest.mark.stack]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# -- helpers -----------------------------------------------------------------------------
def deployment_id(stack: Checkout, name: str) -> str:
    return str(stack.api("GET", f"/deployments/name/{name}")["id"])


def start_run(stack: Checkout, deployment: str, parameters: dict[str, Any]) -> str:
    run = stack.api(
        "POST",
        f"/deployments/{deployment_id(stack, deployment)}/create_flow_run",
        {"parameters": parameters},
    )
    return str(run["id"])


def wait_runs(stack: Checkout, ids: list[str], timeout: float = 300) -> dict[str, dict[str, Any]]:
    """Every run of `ids` once all are in a final state (or the last seen, after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = stack.api("POST", "/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}})
        by_id = {r["id"]: r for r in runs}
        if all(by_id.get(i, {}).get("state_type") in TERMINAL for i in ids):
            return by_id
        if time.monotonic() > deadline:
            return by_id
        time.sleep(2)


def snapshot(stack: Checkout) -> dict[str, list[str]]:
    """What the server knows: deployments, variables, blocks, flow runs."""
    return {
        "deployments": sorted(d["name"] for d in stack.api("POST", "/deployments/filter", {})),
        "variables": sorted(v["name"] for v in stack.api("POST", "/variables/filter", {})),
        "blocks": sorted(b["name"] for b in stack.api("POST", "/block_documents/filter", {})),
        "runs": sorted(r["id"] for r in stack.api("POST", "/flow_runs/filter", {})),
    }


def volumes_of(stack: Checkout) -> list[str]:
    out = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={stack.project}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def apply_fixture(stack: Checkout, name: str) -> None:
    """Apply a deployment of tests/stack/fixture_flows (mounted at /app/fixture_flows)."""
    link = stack.root / "fixture_flows"  # where the import gate looks for the entrypoint
    if not link.exists():
        link.symlink_to(stack.root / "tests" / "stack" / "fixture_flows")
    done = stack.airnub("setup", "apply", "--file", str(link / f"{name}.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


def stored_files_are_consistent(root: Path) -> None:
    """No temp file; every file under raw/ is named by its hash, listed in a run manifest, and
    `latest.json` names files that exist with that hash."""
    assert not [p for p in root.rglob("*.part")], "a temp file of a killed run is left"
    listed = set()
    for manifest in (root / "manifests").glob("*.json"):
        for entry in json.loads(manifest.read_text())["entries"]:
            if entry.get("path"):
                listed.add(entry["path"])
    for path in (root / "raw").rglob("*"):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            assert rel in listed, f"{rel} is in no manifest"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.parent.name, rel
    for entry in json.loads((root / "manifests" / "latest.json").read_text())["entries"]:
        if entry.get("path"):
            data = (root / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["source"]


# -- up, demo, outputs ------------------------------------------------------------------
def test_deploy_local_runs_the_demo_with_outputs_on_the_host(compose_stack: Checkout) -> None:
    stack, out = compose_stack, compose_stack.deploy_output
    assert re.search(r"alpha_pipeline/local: run \S+ Completed", out), out
    assert f"Prefect UI     http://127.0.0.1:{stack.server_port}" in out
    print(f"first deploy local --mode compose (image build included): "
          f"{stack.extra['deploy_seconds']:.0f} s")  # fmt: skip

    root = stack.data_root
    latest = json.loads((root / "manifests" / "latest.json").read_text())
    assert sorted(e["source"] for e in latest["entries"]) == ["cities", "readings", "stations"]
    assert all(e["url"].startswith("http://demo-data:8000/alpha/") for e in latest["entries"])
    summary = json.loads((root / "processed" / "summary.json").read_text())
    assert summary  # written by the process flow in the container
    written = [p for p in root.rglob("*") if p.relative_to(root).parts[0] != ".prefect"]
    assert written
    for path in written:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (10001, os.getgid()), path
        assert st.st_mode & stat.S_IRGRP and st.st_mode & stat.S_IWGRP, (path, oct(st.st_mode))
        if path.is_file():
            path.read_bytes()  # readable by the user who ran deploy:local
    stored_files_are_consistent(root)


def test_ports_are_published_on_loopback_only_and_postgres_not_at_all(
    compose_stack: Checkout,
) -> None:
    rows = [
        json.loads(line)
        for line in compose_stack.compose("ps", "--format", "json").stdout.splitlines()
        if line.strip()
    ]
    published = {
        r["Service"]: sorted({(p["URL"], p["PublishedPort"]) for p in r.get("Publishers") or [] if p["PublishedPort"]})
        for r in rows
    }  # fmt: skip
    assert published["prefect-server"] == [("127.0.0.1", compose_stack.server_port)]
    assert published["demo-data"] == [("127.0.0.1", int(compose_stack.env["AIRNUB_DATA_PORT"]))]
    assert published["postgres"] == []
    assert published["worker"] == []


def test_a_hand_picked_password_works_is_kept_and_never_written_elsewhere(
    compose_stack: Checkout,
) -> None:
    env_file = compose_stack.root / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert env_file.read_text() == password_line(HAND_PICKED_PASSWORD) + "\n"  # kept
    password = HAND_PICKED_PASSWORD
    assert compose_stack.api("GET", "/health") is True  # the server reached PostgreSQL with it
    assert password not in compose_stack.deploy_output
    for written in (compose_stack.root / ".local").rglob("*"):
        if written.is_file():
            assert password.encode() not in written.read_bytes(), written
    image = subprocess.run(
        ["docker", "image", "inspect", compose_stack.env["AIRNUB_IMAGE"]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert password not in image
    logs = compose_stack.compose("logs", "--no-color").stdout
    assert password not in logs


# -- a real browser ----------------------------------------------------------------------
def test_the_ui_url_printed_works_in_a_real_browser(compose_stack: Checkout) -> None:
    from playwright.sync_api import sync_playwright

    ui = re.search(r"Prefect UI\s+(http://\S+)", compose_stack.deploy_output)
    assert ui, compose_stack.deploy_output
    run_name = re.search(r"alpha_pipeline/local: run (\S+) Completed", compose_stack.deploy_output)
    assert run_name
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless=new", "--no-sandbox", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{ui.group(1)}/deployments", wait_until="networkidle")
            # A wrong PREFECT_UI_API_URL shows "Can't connect to Server API" and no deployments.
            for name in ("alpha_pipeline", "alpha_ingest", "alpha_process"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "compose-ui-deployments.png"))
            page.goto(f"{ui.group(1)}/runs", wait_until="networkidle")
            row = page.get_by_text(run_name.group(1), exact=True).first
            row.wait_for(timeout=30_000)
            assert page.get_by_text("Completed").count() >= 3
            assert "Can't connect" not in page.content()
            page.screenshot(path=str(ARTIFACTS / "compose-ui-runs.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "compose-ui-runs.png").stat().st_size > 10_000


# -- same server settings as the process mode; load ------------------------------------------
def test_the_server_runs_with_the_process_modes_settings(compose_stack: Checkout) -> None:
    env = dict(
        line.split("=", 1)
        for line in compose_stack.compose("exec", "-T", "prefect-server", "env").stdout.splitlines()
        if "=" in line
    )
    wanted = server_settings.server_env(host="0.0.0.0", port=4200, database_url=None)
    assert {k: env.get(k) for k in wanted} == wanted
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env  # Prefect builds it from parts
    # Prefect explains every value: the tuning from /app/pyproject.toml, as in process mode.
    for service in ("prefect-server", "worker"):
        shown = compose_stack.compose(
            "exec", "-T", service, "prefect", "config", "view", "--show-sources"
        ).stdout
        assert (
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE='100' (from pyproject.toml)"
            in shown
        )
        assert "PREFECT_WORKER_QUERY_SECONDS='1' (from pyproject.toml)" in shown
        assert "PREFECT_SERVER_ANALYTICS_ENABLED='false' (from env)" in shown
    worker = compose_stack.compose("exec", "-T", "worker", "env").stdout.splitlines()
    assert "DO_NOT_TRACK=1" in worker  # telemetry off by default (AIRNUB_TELEMETRY=1 opts in)


def test_four_thousand_task_flows_back_to_back_record_every_task_run(
    compose_stack: Checkout,
) -> None:
    apply_fixture(compose_stack, "thousand")
    started = time.monotonic()
    ids = []
    for _ in range(4):
        ids.append(start_run(compose_stack, "thousand_tasks/local", {"n": 1000}))
        runs = wait_runs(compose_stack, ids[-1:], timeout=400)
        assert runs[ids[-1]]["state_type"] == "COMPLETED", runs[ids[-1]]["state"]
    print(f"4 x 1000 tasks: {time.monotonic() - started:.0f} s")
    for run_id in ids:
        body = {"flow_runs": {"id": {"any_": [run_id]}}}
        done = {**body, "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
        deadline = time.monotonic() + 90  # the recorder writes in batches
        while time.monotonic() < deadline:
            counts = (
                compose_stack.api("POST", "/task_runs/count", body),
                compose_stack.api("POST", "/task_runs/count", done),
            )
            if counts == (1000, 1000):
                break
            time.sleep(1)
        assert counts == (1000, 1000), run_id
    assert "dropping message" not in compose_stack.compose("logs", "prefect-server").stdout


def test_fifty_concurrent_runs_all_complete(compose_stack: Checkout) -> None:
    apply_fixture(compose_stack, "sleeper")
    started = time.monotonic()
    ids = [start_run(compose_stack, "sleeper/local", {"seconds": 1}) for _ in range(50)]
    runs = wait_runs(compose_stack, ids, timeout=600)
    states = [runs.get(i, {}).get("state_type") for i in ids]
    print(f"50 concurrent runs: {states.count('COMPLETED')} Completed in "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    assert states.count("COMPLETED") == 50, states
    server_log = compose_stack.compose("logs", "prefect-server").stdout
    assert "QueuePool limit" not in server_log
    assert "TimeoutError" not in server_log


# -- faults ------------------------------------------------------------------------------
def test_a_postgres_restart_while_idle_is_recovered_from(compose_stack: Checkout) -> None:
    before = compose_stack.api("POST", "/flow_runs/count", {})
    restarted = compose_stack.compose("restart", "postgres")
    assert restarted.returncode == 0, restarted.stderr
    services = compose_stack.extra["services"]
    services.wait_until_responsive(
        check=lambda: compose_stack.compose("ps", "--format", "json", "postgres").stdout.count(
            '"Health":"healthy"'
        ) == 1,
        timeout=120, pause=1,
    )  # fmt: skip
    run_id = start_run(compose_stack, "sleeper/local", {"seconds": 1})
    run = wait_runs(compose_stack, [run_id], timeout=180)[run_id]
    assert run["state_type"] == "COMPLETED", run["state"]
    assert compose_stack.api("POST", "/flow_runs/count", {}) == before + 2  # run + its subflow


def test_a_worker_killed_mid_ingest_leaves_a_consistent_store(compose_stack: Checkout) -> None:
    root = compose_stack.data_root
    sources = [
        {"name": "slow", "url": "http://slow-data:8001/slow.csv", "format": "csv"},
        {"name": "cities", "url": "http://demo-data:8000/alpha/cities.csv", "format": "csv"},
    ]
    up = compose_stack.compose("up", "--detach", "--wait", "slow-data")
    assert up.returncode == 0, up.stderr
    killed_run = start_run(compose_stack, "alpha_ingest/local", {"sources": sources})
    deadline = time.monotonic() + 120
    while not list((root / "raw").rglob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list((root / "raw").rglob("*.part")), "the slow download never started"
    killed = subprocess.run(["docker", "kill", compose_stack.container("worker")],
                            capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == 0, killed.stderr

    back = compose_stack.airnub("stack", "up", "--mode", "compose")
    assert back.returncode == 0, back.stdout + back.stderr
    run = wait_runs(compose_stack, [killed_run], timeout=60)[killed_run]
    assert run["state_type"] == "CRASHED", run["state"]
    assert "its worker stopped while RUNNING" in run["state"]["message"]
    assert not list(root.rglob("*.part")), "the new worker did not sweep the dead run's temp file"

    again = start_run(compose_stack, "alpha_ingest/local", {"sources": sources})
    run = wait_runs(compose_stack, [again], timeout=300)[again]
    assert run["state_type"] == "COMPLETED", run["state"]
    latest = json.loads((root / "manifests" / "latest.json").read_text())
    assert {e["source"]: e["status"] for e in latest["entries"]}["slow"] == "downloaded"
    assert len([p for p in (root / "raw" / "slow").rglob("*") if p.is_file()]) == 1
    stored_files_are_consistent(root)


def test_a_second_checkout_runs_beside_the_first(compose_stack: Checkout, tmp_path: Path) -> None:
    from pytest_docker.plugin import get_docker_services

    first_before = snapshot(compose_stack)
    second = make_checkout(tmp_path / "second", compose_images())
    second.env["AIRNUB_IMAGE"] += "-second"  # its own tag: the first one's image stays current
    assert second.project != compose_stack.project
    with get_docker_services(
        second.compose_command(), second.compose_files(), second.project,
        docker_setup=[], docker_cleanup=["down --volumes --timeout 5"],
    ):  # fmt: skip
        done = second.airnub("deploy", "local", "--mode", "compose", timeout=900)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert re.search(r"alpha_pipeline/local: run \S+ Completed", done.stdout)
        assert (second.data_root / "manifests" / "latest.json").is_file()
        assert snapshot(compose_stack) == first_before  # the first stack saw nothing of it
        mine, theirs = set(volumes_of(compose_stack)), set(volumes_of(second))
        assert mine and theirs and not mine & theirs
        status = compose_stack.airnub("stack", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert second.airnub("stack", "down", "--volumes", "--yes").returncode == 0


# -- down and up, --volumes ---------------------------------------------------------------
def test_down_keeps_the_data_and_only_volumes_drops_it(compose_stack: Checkout) -> None:
    before = snapshot(compose_stack)
    down = compose_stack.airnub("stack", "down")
    assert down.returncode == 0, down.stderr
    assert compose_stack.compose("ps", "-q").stdout.strip() == ""
    assert volumes_of(compose_stack)

    up = compose_stack.airnub("deploy", "local", "--mode", "compose", "--no-demo")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "up to date" in up.stdout
    assert snapshot(compose_stack) == before

    refused = compose_stack.airnub("stack", "down", "--volumes")  # no TTY, no --yes
    assert refused.returncode == 2
    assert "confirm with --yes" in refused.stderr
    assert snapshot(compose_stack) == before

    dropped = compose_stack.airnub("stack", "down", "--volumes", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert "the server's data was deleted" in dropped.stdout
    assert volumes_of(compose_stack) == []

    fresh = compose_stack.airnub("deploy", "local", "--mode", "compose", "--no-demo")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "deployment alpha_pipeline/local: created" in fresh.stdout
    assert snapshot(compose_stack)["runs"] == []
