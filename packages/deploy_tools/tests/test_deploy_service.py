"""`deploy_service` through a recording `Reporter` and a stack that starts nothing.

What needs a real server (apply, demo runs) is covered end to end by tests/stack.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy_tools.deploy_service import DeployError, deploy_local, gate_files
from deploy_tools.settings import ProjectSettings, load_settings
from deploy_tools.stack import PartLog, PartStatus, Ports, ProcessStack, Stack, StackError

REPO = Path(__file__).resolve().parents[3]


@dataclass
class RecordingReporter:
    """Every call, in order, as `(method, text)`."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def step_started(self, step: str, detail: str = "") -> None:
        self.calls.append(("started", step))

    def progress(self, step: str, detail: str) -> None:
        self.calls.append(("progress", f"{step}: {detail}"))

    def step_finished(self, step: str, detail: str = "", *, ok: bool = True) -> None:
        self.calls.append(("finished" if ok else "failed", f"{step}: {detail}"))

    def info(self, message: str) -> None:
        self.calls.append(("info", message))

    def failure(self, message: str) -> None:
        self.calls.append(("failure", message))

    def of(self, kind: str) -> list[str]:
        return [text for k, text in self.calls if k == kind]


class InertStack:
    """A `Stack` that records what it was asked and starts nothing (the local stack's values)."""

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

    def down(self) -> list[str]:
        return []

    def status(self) -> list[PartStatus]:
        return []

    def logs(self, part: str = "all", lines: int = 40) -> list[PartLog]:
        return [PartLog("worker", "/nowhere/worker.log", None)]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_inert_stack_is_a_stack(checkout: Path) -> None:
    stack: Stack = InertStack(load_settings(checkout))  # mypy checks the Protocol here
    assert stack.apply_env()["AIRNUB_LOCAL_POOL"] == "local-process"


def test_gate_files_are_every_project_file_and_remote_on_request(checkout: Path) -> None:
    settings = load_settings(checkout)
    local = checkout.resolve() / "deploy" / "projects" / "alpha" / "prefect.local.yaml"
    assert gate_files(settings) == [local]
    assert gate_files(settings, remote=True) == [
        local,
        checkout.resolve() / "deploy" / "prefect.yaml",
    ]


def test_a_broken_entrypoint_stops_before_the_stack(checkout: Path) -> None:
    path = checkout / "deploy" / "projects" / "alpha" / "prefect.local.yaml"
    path.write_text(
        path.read_text().replace("flows_alpha.process:process", "flows_alpha.process:gone")
    )
    settings = load_settings(checkout)
    stack, reporter = InertStack(settings), RecordingReporter()
    with pytest.raises(DeployError, match="fix the entrypoints above"):
        deploy_local(settings, stack, reporter)
    assert stack.asked == []
    (line,) = reporter.of("failure")
    assert line.startswith(f"broken {path.resolve()}: local: flows_alpha.process:gone: ")
    assert reporter.of("failed") == ["entrypoints: 1 of 3 entrypoints are broken"]


def test_a_stack_that_cannot_start_is_one_error(checkout: Path) -> None:
    settings = load_settings(checkout)
    stack = InertStack(settings, up_error="port 4200 on 127.0.0.1 is taken by another program")
    reporter = RecordingReporter()
    with pytest.raises(DeployError, match=r"port 4200 on 127\.0\.0\.1 is taken"):
        deploy_local(settings, stack, reporter)
    assert reporter.of("finished") == ["entrypoints: all 3 import as flows"]
    assert reporter.of("failed") == ["stack: did not start"]


def test_invalid_files_apply_nothing_and_start_no_worker(checkout: Path) -> None:
    (checkout / "deploy" / "projects" / "alpha" / "variables" / "bad.yaml").write_text(
        "name: alpha_bad\nvalue: 1\ntags: not-a-list\n"
    )
    settings = load_settings(checkout)
    stack, reporter = InertStack(settings), RecordingReporter()
    with pytest.raises(DeployError, match="setup apply stopped; the stack is up"):
        deploy_local(settings, stack, reporter)
    assert stack.asked == ["up"]
    assert reporter.of("failed") == ["setup: invalid setup files, nothing was applied:"]
    assert any(
        "deploy/projects/alpha/variables/bad.yaml: tags" in f for f in reporter.of("failure")
    )


def test_no_file_defines_the_local_pool(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRNUB_LOCAL_POOL", "other-pool")
    (checkout / "deploy" / "work_pools" / "local-process.yaml").write_text(
        "name: local-process\ntype: process\n"
    )
    settings = load_settings(checkout)
    stack, reporter = InertStack(settings), RecordingReporter()
    with pytest.raises(DeployError, match="setup apply stopped"):
        deploy_local(settings, stack, reporter)
    assert any("local pool 'other-pool'" in f for f in reporter.of("failure"))


def test_no_projects_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.airnub]\n")
    settings = load_settings(tmp_path)
    with pytest.raises(DeployError, match=r"no projects in \[tool.airnub.projects\]"):
        deploy_local(settings, InertStack(settings), RecordingReporter())


def test_no_server_under_a_demo_run_is_one_line(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy_tools.deploy_service import run_deployment

    monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", "0")  # fail fast against the dead port

    reporter = RecordingReporter()
    with pytest.raises(
        DeployError, match=r"^the Prefect server at http://127\.0\.0\.1:9/api stopped answering$"
    ):
        run_deployment(
            InertStack(load_settings(checkout)), "alpha_pipeline/local", reporter, timeout=5
        )
    assert reporter.of("failed")[0].startswith("alpha_pipeline/local: ")
