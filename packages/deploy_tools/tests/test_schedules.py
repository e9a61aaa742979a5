"""Schedules that survive redeploys: cron, interval with a fixed anchor, and rrule.

The first tests need no server: bad schedules are refused naming file and key, remote files
need slugs and anchors, and the matching of file schedules to the server's. The others run a
real `prefect server start` whose scheduler loops every second, so the scheduler races each
apply: `setup apply` three more times, then `prefect deploy` of a remote-style file four times,
counting the scheduled runs (start times, run ids, schedule ids) after each.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from deploy_tools.local.stack.processes import ManagedProcess
from deploy_tools.prefect_api import use_api
from deploy_tools.remote.service import load_remote_file
from deploy_tools.reporting import DeployError
from deploy_tools.setup import SetupFiles, SetupFilesError, apply_plan, load_plan
from deploy_tools.setup.models import Schedule
from deploy_tools.setup.schedules import plan_schedules, schedule_deployed

PREFECT = Path(sys.executable).with_name("prefect")
FLOW = "from prefect import flow\n\n\n@flow\ndef tick(n: int = 1) -> int:\n    return n\n"
# One of each kind; the last interval has no anchor_date: the server's is kept.
SCHEDULES = """\
      - cron: "*/10 * * * *"
        timezone: Europe/Dublin
      - interval: 600
        anchor_date: "2026-01-01T00:03:00Z"
        slug: every-10m
      - rrule: "FREQ=MINUTELY;INTERVAL=15"
        timezone: America/New_York
        parameters: {n: 2}
      - interval: PT15M
"""


def write_project(folder: Path, schedules: str = SCHEDULES, description: str = "one") -> Path:
    """A flow file, a process pool and a prefect.yaml with one deployment of `schedules`."""
    (folder / "work_pools").mkdir(parents=True, exist_ok=True)
    (folder / "flows.py").write_text(FLOW)
    (folder / "work_pools" / "pool.yaml").write_text("name: sched-pool\ntype: process\n")
    file = folder / "prefect.yaml"
    file.write_text(
        "pull: []\ndeployments:\n  - name: ticks\n    entrypoint: flows.py:tick\n"
        f"    description: {description}\n    work_pool: {{name: sched-pool}}\n"
        f"    schedules:\n{schedules}"
    )
    return file


def problems_of(folder: Path, schedules: str) -> list[str]:
    file = write_project(folder, schedules)
    with pytest.raises(SetupFilesError) as err:
        load_plan([SetupFiles(folder, {}, (file,))], base=folder)
    return err.value.problems


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ('      - cron: "61 * * * *"\n', 'schedules.0.cron: Value error, Invalid cron string: "61 * * * *"'),
        ('      - cron: "0 * * * *"\n        timezone: Mars/Olympus\n', 'schedules.0.timezone: Value error, Invalid timezone: "Mars/Olympus"'),
        ("      - rrule: FREQ=SOMETIMES\n", "schedules.0.rrule: Value error, Invalid RRule string"),
        ("      - active: false\n", "schedules.0: Value error, exactly one of cron, interval or rrule is needed, got none"),
        ('      - {cron: "0 * * * *", interval: 60}\n', "schedules.0: Value error, exactly one of cron, interval or rrule is needed, got cron and interval"),
        ("      - interval: 0\n", "schedules.0.interval: Value error, must be more than 0 seconds"),
        ("      - interval: 60\n        anchor_date: 2026-01-01T00:00:00Z\n", 'schedules.0.anchor_date: Value error, a YAML date, not text: quote it (anchor_date: "2026-01-01T00:00:00Z")'),
        ('      - interval: 60\n        anchor_date: "soon"\n', "schedules.0.anchor_date: Value error, not a date and time"),
        ('      - {cron: "0 * * * *", anchor_date: "2026-01-01T00:00:00Z"}\n', "schedules.0: Value error, anchor_date is for an interval schedule only"),
        ('      - {cron: "0 * * * *", slug: a}\n      - {interval: 60, slug: a}\n', "schedules: Value error, slug a is given to more than one schedule"),
        ('      - {cron: "0 * * * *", every: 2}\n', "schedules.0.every: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_refused_naming_file_and_key(
    tmp_path: Path, schedule: str, expected: str
) -> None:
    (problem,) = problems_of(tmp_path, schedule)
    assert problem.startswith("prefect.yaml: deployments.0."), problem
    assert expected in problem


def test_a_remote_file_needs_a_slug_on_each_schedule_and_an_anchor_on_each_interval(
    tmp_path: Path,
) -> None:
    file = write_project(tmp_path, '      - cron: "0 * * * *"\n      - {interval: 600, slug: b}\n')
    with pytest.raises(DeployError) as err:
        load_remote_file(file)
    text = str(err.value)
    assert "deployments.0.schedules.0\n  Value error, a remote file's schedule needs a slug" in text
    assert (
        "deployments.0.schedules.1\n  Value error, a remote file's interval needs anchor_date"
        in text
    )
    write_project(tmp_path, SCHEDULES.replace("      - interval: PT15M\n", ""))
    with pytest.raises(DeployError, match="needs a slug"):
        load_remote_file(file)  # the cron and the rrule have none
    stable = '      - {cron: "0 * * * *", slug: a}\n      - {interval: 60, slug: b, anchor_date: "2026-01-01T00:00:00Z"}\n'
    write_project(tmp_path, stable)
    assert len(load_remote_file(file)["deployments"][0]["schedules"]) == 2


def _on_server(
    spec: Schedule, slug: str | None = None, anchor: str = "2026-03-01T10:00:00Z"
) -> Any:
    from prefect.client.schemas.objects import DeploymentSchedule
    from prefect.client.schemas.schedules import IntervalSchedule

    from deploy_tools.setup.schedules import prefect_schedule

    schedule = prefect_schedule(spec)
    if isinstance(schedule, IntervalSchedule) and spec.anchor_date is None:
        schedule = IntervalSchedule(interval=schedule.interval, anchor_date=anchor)
    return DeploymentSchedule(id=uuid4(), deployment_id=uuid4(), schedule=schedule, slug=slug,
                              active=spec.active, parameters=spec.parameters)  # fmt: skip


def test_file_schedules_are_matched_to_the_server_s_by_slug_or_by_what_they_are() -> None:
    cron, hourly = Schedule(cron="0 * * * *"), Schedule(interval=timedelta(hours=1))
    server = [_on_server(cron), _on_server(hourly)]
    assert plan_schedules([hourly, cron], server).unchanged  # the server's anchor is kept

    daily = Schedule(interval=timedelta(days=1))
    changes = plan_schedules([cron, daily], server)
    ((kept_id, update),) = changes.update  # the interval is updated in place, its id kept
    assert kept_id == server[1].id and (changes.create, changes.delete) == ([], [])
    assert update.schedule.anchor_date == server[1].schedule.anchor_date

    slugged = [_on_server(cron, "hourly-cron")]
    renamed = Schedule(cron="0 * * * *", slug="on-the-hour", replaces="hourly-cron")
    ((kept_id, update),) = plan_schedules([renamed], slugged).update
    assert (kept_id, update.slug) == (slugged[0].id, "on-the-hour")
    changes = plan_schedules([Schedule(cron="0 * * * *")], slugged)  # its slug was dropped
    assert changes.delete == [slugged[0].id] and len(changes.create) == 1
    assert plan_schedules([], server).delete == [s.id for s in server]


# --- on a real server, its scheduler racing every apply ------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on SQLite; the scheduler loops every second (default 60 s)."""
    import socket

    home = tmp_path_factory.mktemp("schedules-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false", PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1",
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'db.sqlite'}")  # fmt: skip
    proc = ManagedProcess("server", home)
    proc.start([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
               env=env, cwd=home)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.pid() is not None, proc.log_file.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, proc.log_file.read_text()[-3000:]
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        proc.stop()


def snapshot(api: str, name: str) -> dict[str, Any]:
    """A deployment's schedule ids and its scheduled runs: (schedule id, start time, run id)."""
    (dep,) = httpx.post(f"{api}/deployments/filter",
                        json={"deployments": {"name": {"any_": [name]}}}).json()  # fmt: skip
    runs = httpx.post(f"{api}/flow_runs/filter", json={
        "deployments": {"id": {"any_": [dep["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }).json()  # fmt: skip
    return {
        "schedules": sorted((s["id"], s["slug"], str(s["schedule"])) for s in dep["schedules"]),
        "runs": sorted((r["created_by"]["id"], r["expected_start_time"], r["id"]) for r in runs),
    }


def same_runs(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """Assert no scheduled start time was lost, moved or duplicated; (runs before, after).

    Time passes between the two: a run that became due is still Scheduled (no worker), and
    the scheduler may add runs at the end of its horizon, later than every run before.
    """
    times_before = {(s, t) for s, t, _ in before["runs"]}
    times_after = [(s, t) for s, t, _ in after["runs"]]
    assert len(times_after) == len(set(times_after)), "a start time was scheduled twice"
    assert times_before <= set(times_after), f"lost: {sorted(times_before - set(times_after))}"
    last = max(t for _, t in times_before)
    assert all(t > last for _, t in set(times_after) - times_before), "a start time moved"
    return len(before["runs"]), len(after["runs"])


def test_setup_apply_keeps_schedule_ids_and_scheduled_runs_across_redeploys(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the entrypoint is a file of this folder

    def apply(description: str = "one", schedules: str = SCHEDULES) -> str:
        file = write_project(tmp_path, schedules, description)
        plan = load_plan([SetupFiles(tmp_path, {}, (file,))], base=tmp_path)
        with use_api(server):
            changes = asyncio.run(apply_plan(plan))
        (change,) = (c for c in changes if c.kind == "deployment")
        return f"{change.action} ({change.detail})" if change.detail else change.action

    assert apply() == "created"
    first = snapshot(server, "ticks")
    assert len(first["schedules"]) == 4 and len({s for s, _, _ in first["runs"]}) == 4
    time.sleep(2.5)  # the scheduler has looped: it added nothing to what the apply scheduled
    counts = [len(first["runs"]), len(snapshot(server, "ticks")["runs"])]
    assert counts[1] == counts[0]
    before = snapshot(server, "ticks")
    for _ in range(2):  # unchanged files: nothing written, every run kept (ids too)
        assert apply() == "unchanged"
        time.sleep(1.5)
        after = snapshot(server, "ticks")
        assert after["schedules"] == before["schedules"]
        assert {r for _, _, r in before["runs"]} <= {r for _, _, r in after["runs"]}
        counts.append(same_runs(before, after)[1])
        before = after
    # Another field changed: the server drops the future runs on any write; the apply has them
    # scheduled again at once, at the same times (same schedule ids and anchors).
    assert apply(description="two") == "updated (schedules kept)"
    after = snapshot(server, "ticks")
    assert after["schedules"] == before["schedules"]
    counts.append(same_runs(before, after)[1])
    renewed = len({r for *_, r in before["runs"]} - {r for *_, r in after["runs"]})
    time.sleep(1.5)
    counts.append(same_runs(after, snapshot(server, "ticks"))[1])
    # One schedule changed: updated in place (its id kept), the others untouched.
    assert apply("two", SCHEDULES.replace("*/10 * * * *", "*/20 * * * *")) == (
        "updated (schedules: 1 updated)"
    )
    changed = snapshot(server, "ticks")
    assert [s for s, _, _ in changed["schedules"]] == [s for s, _, _ in after["schedules"]]
    cron_id = next(s for s, _, text in after["schedules"] if "'cron'" in text)
    same_runs(*({"runs": [r for r in x["runs"] if r[0] != cron_id]} for x in (after, changed)))
    print(f"scheduled runs: created {counts[0]}, after the scheduler's loop {counts[1]}, "
          f"two unchanged applies {counts[2:4]}, a changed description {counts[4:6]} "
          f"({renewed} runs scheduled again under new ids)")  # fmt: skip


STABLE = """\
  - name: stable
    entrypoint: flows.py:tick
    work_pool: {name: sched-pool}
    schedules:
      - {cron: "*/10 * * * *", slug: cron-10m}
      - {interval: 600, anchor_date: "2026-01-01T00:03:00Z", slug: every-10m}
      - {rrule: "FREQ=MINUTELY;INTERVAL=15", slug: rrule-15m}
"""
PLAIN = """\
  - name: plain
    entrypoint: flows.py:tick
    work_pool: {name: sched-pool}
    schedules:
      - {cron: "*/10 * * * *"}
      - {interval: 600}
"""


def test_prefect_deploy_of_a_remote_file_keeps_ids_and_start_times(
    server: str, tmp_path: Path
) -> None:
    """What `deploy remote` does: `prefect deploy` of a file with slugs and anchors, then the
    runs scheduled at once. The `plain` deployment (no slug, no anchor, refused in a remote
    file) shows what Prefect does without them."""
    write_project(tmp_path)
    remote_file = tmp_path / "prefect.remote.yaml"
    remote_file.write_text("pull: []\ndeployments:\n" + STABLE)
    load_remote_file(remote_file)  # valid as a remote file
    (tmp_path / "prefect.yaml").write_text("pull: []\ndeployments:\n" + STABLE + PLAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}
    env.update(PREFECT_API_URL=server, PREFECT_HOME=str(tmp_path / "home"), DO_NOT_TRACK="1")
    keys = [("flows.py:tick", "stable"), ("flows.py:tick", "plain")]
    pool = httpx.post(f"{server}/work_pools/", json={"name": "sched-pool", "type": "process"})
    assert pool.status_code in (201, 409), pool.text  # 409: the setup apply test made it

    def deploy() -> dict[str, dict[str, Any]]:
        done = subprocess.run([str(PREFECT), "--no-prompt", "deploy", "--all"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert schedule_deployed(server, keys) == 2
        return {name: snapshot(server, name) for name in ("stable", "plain")}

    rounds = [deploy()]
    for _ in range(3):
        rounds.append(deploy())
        before, after = rounds[-2], rounds[-1]
        assert after["stable"]["schedules"] == before["stable"]["schedules"]
        same_runs(before["stable"], after["stable"])
        # Prefect without slugs: new schedule ids each deploy; without an anchor the
        # interval's start times move to the deploy time.
        ids = {s for s, _, _ in before["plain"]["schedules"]}
        assert ids.isdisjoint(s for s, _, _ in after["plain"]["schedules"])
        intervals = [
            {x for _, _, x in r["plain"]["schedules"] if "interval" in x} for r in (before, after)
        ]
        assert intervals[0] != intervals[1]  # its anchor_date moved
    counts = [len(r["stable"]["runs"]) for r in rounds]
    kept = [len({r for *_, r in a["stable"]["runs"]} & {r for *_, r in b["stable"]["runs"]})
            for a, b in itertools.pairwise(rounds)]  # fmt: skip
    print(f"prefect deploy x4, scheduled runs of `stable`: {counts}; run ids kept {kept}")
    assert all(counts)  # right after each deploy: no gap until the scheduler's next loop
