"""`deploy_tools.local.service` through a recording `Reporter` and a stack that starts nothing.

What needs a real server (apply, demo runs) is covered end to end by tests/stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deploy_tools.local.service import deploy_local, gate_files
from deploy_tools.local.stack import PartLog, PartStatus, Ports, ProcessStack, Stack, StackError
from deploy_tools.reporting import DeployError
from deploy_tools.settings import ProjectSettings, load_settings

if TYPE_CHECKING:
    from conftest import RecordingReporter


class InertStack:
    """A `Stack` that records what it was asked and starts nothing (the local stack's values)."""

    worker_sweeps = False  # deploy local sweeps (both real stacks' worker starts do)

    def __init__(self, settings: object, *, up_error: str | None = None) -> None:
        self._values = ProcessStack(settings, Ports(4200, 8765))  # type: ignore[arg-type]
        self.up_error = up_error
        self.asked: list[str] = []

    @property
    def api_url(self) -> str:
        return "http://127.0.0.1:9/api"  # nothing listens

    @property
    def ui_url(self) -> str:
        return "http://127.0.0.1:9"

    def up(self, *, worker: bool = True) -> None:
        self.asked.append("up")
        if self.up_error:
            raise StackError(self.up_error)

    def apply_env(self, project: ProjectSettings | None = None) -> dict[str, str]:
        return self._values.apply_env(project)

    def start_worker(self) -> None:
        self.asked.append("start_worker")

    def stop_worker(self) -> bool:
        self.asked.append("stop_worker")
        return False

    def down(self, *, volumes: bool = False) -> list[str]:
        self.asked.append("down --volumes" if volumes else "down")
        return []

    def status(self) -> list[PartStatus]:
        return []

    def logs(self, part: str = "all", lines: int = 40) -> list[PartLog]:
        return [PartLog("worker", "/nowhere/worker.log", None)]


def test_the_inert_stack_is_a_stack(checkout: Path) -> None:
    stack: Stack = InertStack(load_settings(checkout))  # mypy checks the Protocol here
    assert stack.apply_env()["STACK_POOL"] == "local-process"


def test_gate_files_are_every_project_file_and_remote_on_request(checkout: Path) -> None:
    settings = load_settings(checkout)
    projects = checkout.resolve() / "deploy" / "projects"
    local = [projects / "alpha" / "prefect.local.yaml", projects / "beta" / "prefect.local.yaml"]
    assert gate_files(settings) == local
    # beta has no remote prefect.yaml: only alpha's is added
    assert gate_files(settings, remote=True) == [*local, projects / "alpha" / "prefect.yaml"]


def test_a_broken_entrypoint_stops_before_the_stack(
    checkout: Path, reporter: RecordingReporter
) -> None:
    path = checkout / "deploy" / "projects" / "alpha" / "prefect.local.yaml"
    path.write_text(
        path.read_text().replace(
            "airnub_fixture_alpha.flows:alpha_process", "airnub_fixture_alpha.gone:alpha_process"
        )
    )
    settings = load_settings(checkout)
    stack = InertStack(settings)
    with pytest.raises(DeployError, match="fix the entrypoints above"):
        deploy_local(settings, stack, reporter)
    assert stack.asked == []
    (line,) = reporter.of("failure")
    # named flow/deployment: every project's deployments are called `local`
    assert line.startswith(
        f"broken {path.resolve()}: alpha_process/local: airnub_fixture_alpha.gone:alpha_process: "
    )
    assert reporter.of("failed") == ["entrypoints: 1 of 4 entrypoints are broken"]


def test_a_stack_that_cannot_start_is_one_error(
    checkout: Path, reporter: RecordingReporter
) -> None:
    settings = load_settings(checkout)
    stack = InertStack(settings, up_error="port 4200 on 127.0.0.1 is taken by another program")
    with pytest.raises(DeployError, match=r"port 4200 on 127\.0\.0\.1 is taken"):
        deploy_local(settings, stack, reporter)
    assert reporter.of("finished") == ["entrypoints: all 4 import as flows"]
    assert reporter.of("failed") == ["stack: did not start"]


def test_invalid_files_apply_nothing_and_start_no_worker(
    checkout: Path, reporter: RecordingReporter
) -> None:
    (checkout / "deploy" / "projects" / "alpha" / "variables" / "bad.yaml").write_text(
        "name: alpha_bad\nvalue: 1\ntags: not-a-list\n"
    )
    settings = load_settings(checkout)
    stack = InertStack(settings)
    with pytest.raises(DeployError, match="setup apply stopped; the stack is up"):
        deploy_local(settings, stack, reporter)
    assert stack.asked == ["up"]
    assert reporter.of("failed") == ["setup: invalid setup files, nothing was applied:"]
    assert any(
        "deploy/projects/alpha/variables/bad.yaml: tags" in f for f in reporter.of("failure")
    )


def test_no_file_defines_the_local_pool(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, reporter: RecordingReporter
) -> None:
    monkeypatch.setenv("AIRNUB_LOCAL_POOL", "other-pool")
    (checkout / "deploy" / "work_pools" / "local-process.yaml").write_text(
        "name: local-process\ntype: process\n"
    )
    settings = load_settings(checkout)
    stack = InertStack(settings)
    with pytest.raises(DeployError, match="setup apply stopped"):
        deploy_local(settings, stack, reporter)
    assert any("local pool 'other-pool'" in f for f in reporter.of("failure"))


def test_no_projects_is_a_clear_error(checkout: Path, reporter: RecordingReporter) -> None:
    for name in ("fixture_alpha", "fixture_beta"):  # members, but no longer projects
        path = checkout / "packages" / name / "pyproject.toml"
        path.write_text(path.read_text().split("[tool.airnub.project]")[0])
    settings = load_settings(checkout)
    with pytest.raises(
        DeployError, match=r"no project in the workspace \(a member under packages/ with a \["
    ):
        deploy_local(settings, InertStack(settings), reporter)


def test_no_server_under_a_demo_run_is_one_line(
    checkout: Path, reporter: RecordingReporter
) -> None:
    from deploy_tools.local.service import run_deployment

    with pytest.raises(DeployError) as caught:
        run_deployment(
            InertStack(load_settings(checkout)), "alpha_pipeline/local", reporter, timeout=5
        )
    assert str(caught.value) == (
        "the Prefect server at http://127.0.0.1:9/api stopped answering during the run of "
        "alpha_pipeline/local (ConnectError: All connection attempts failed); "
        "`airnub stack status` shows what is running"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert reporter.of("failed") == ["alpha_pipeline/local: the Prefect server stopped answering"]


def test_no_server_under_setup_apply_is_one_line(
    checkout: Path, reporter: RecordingReporter
) -> None:
    from deploy_tools.local.service import apply_setup

    settings = load_settings(checkout)
    with pytest.raises(DeployError) as caught:
        apply_setup(settings, InertStack(settings), reporter)
    assert str(caught.value).startswith(
        "the Prefect server at http://127.0.0.1:9/api stopped answering during setup apply "
        "(ConnectError: "
    )
    assert "\n" not in str(caught.value)
    assert reporter.of("failed") == ["setup: the Prefect server stopped answering"]


# -- issue 10: safe to run twice, safe to stop mid-run ----------------------------------------
def _part_file(folder: Path, age: float) -> Path:
    """A temp file named as `LocalStorage.stage` names them, `age` seconds old."""
    import os
    import tempfile
    import time

    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    os.close(fd)
    then = time.time() - age
    os.utime(name, (then, then))
    return Path(name)


def test_deploy_local_sweeps_old_temp_files_of_every_project_before_apply(
    checkout: Path,
    reporter: RecordingReporter,
) -> None:
    settings = load_settings(checkout)
    alpha = settings.project("alpha")  # beta has no data root: nothing to sweep there
    assert alpha.data_root is not None
    old = [_part_file(alpha.data_root, 7200), _part_file(alpha.data_root / "raw" / "x", 7200)]
    young = _part_file(alpha.data_root / "raw" / "x", 60)
    other = alpha.data_root / "notes.part"
    other.write_text("not a temp file of ours")
    with pytest.raises(DeployError) as caught:
        deploy_local(settings, InertStack(settings), reporter)  # the inert stack has no server
    assert "stopped answering during setup apply" in str(caught.value)
    assert "the stack is up" not in str(caught.value)  # its server is gone
    assert not any(f.exists() for f in old)
    assert young.exists() and other.exists()
    assert reporter.of("info") == [
        f"removed 2 stale temp file(s) of interrupted runs under {alpha.data_root}"
    ]


def test_deploy_local_refuses_without_wait_while_the_lock_is_held(
    checkout: Path, reporter: RecordingReporter
) -> None:
    import os

    from deploy_tools.local.stack.lock import StackLock

    settings = load_settings(checkout)
    stack = InertStack(settings)
    with (
        StackLock(settings.local_dir, "stack down"),
        pytest.raises(DeployError) as caught,
    ):
        deploy_local(settings, stack, reporter, wait=False)
    assert str(caught.value) == (
        f"stack down (pid {os.getpid()}) is starting or stopping the stack of this checkout; "
        "run again without --no-wait to wait for it"
    )
    assert stack.asked == []


def test_stop_local_stops_the_worker_first_and_tells_no_server_nothing(
    checkout: Path, reporter: RecordingReporter
) -> None:
    from deploy_tools.local.service import stop_local

    settings = load_settings(checkout)
    stack = InertStack(settings)
    result = stop_local(settings, stack, reporter)
    assert stack.asked == ["stop_worker", "down"]
    assert result.cancelled == [] and result.stopped == []


def test_stop_local_refuses_without_wait_while_the_lock_is_held(
    checkout: Path, reporter: RecordingReporter
) -> None:
    from deploy_tools.local.service import stop_local
    from deploy_tools.local.stack.lock import StackLock

    settings = load_settings(checkout)
    stack = InertStack(settings)
    with (
        StackLock(settings.local_dir, "deploy local"),
        pytest.raises(DeployError, match=r"^deploy local \(pid \d+\) is starting or stopping"),
    ):
        stop_local(settings, stack, reporter, wait=False)
    assert stack.asked == []
