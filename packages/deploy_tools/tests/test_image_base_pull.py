"""`image build` with a base missing from the local store: pull by digest, else refuse.

Docker is faked here; tests/image/test_base_pull.py pulls for real from a registry on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from deploy_tools.image import build

PINNED = "python:3.11-slim@sha256:" + "ab" * 32


class FakeDocker:
    def __init__(self, *, present: bool = False, pull_ok: bool = True) -> None:
        self.present = present
        self.pull_ok = pull_ok
        self.calls: list[list[str]] = []

    def run(self, cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        if cmd[:3] == ["docker", "image", "inspect"]:
            return subprocess.CompletedProcess(cmd, 0 if self.present else 1, "", "")
        if cmd[:2] == ["docker", "pull"]:
            if self.pull_ok:
                self.present = True
                return subprocess.CompletedProcess(cmd, 0, "", "")
            return subprocess.CompletedProcess(
                cmd, 1, "", "Error response from daemon: dial tcp: connection refused\n"
            )
        raise AssertionError(cmd)


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    fake = FakeDocker()
    monkeypatch.setattr(build.subprocess, "run", fake.run)
    return fake


def test_present_base_is_not_pulled(docker: FakeDocker) -> None:
    docker.present = True
    assert build.ensure_base_image(PINNED, log=pytest.fail) is False
    assert [c[:2] for c in docker.calls] == [["docker", "image"]]


def test_missing_pinned_base_is_pulled_and_said(docker: FakeDocker) -> None:
    said: list[str] = []
    assert build.ensure_base_image(PINNED, log=said.append) is True
    assert ["docker", "pull", PINNED] in docker.calls
    assert said == [f"pulling {PINNED}", f"pulled {PINNED}"]


def test_failed_pull_is_refused_with_the_offline_alternative(docker: FakeDocker) -> None:
    docker.pull_ok = False
    said: list[str] = []
    with pytest.raises(RuntimeError) as err:
        build.ensure_base_image(PINNED, log=said.append)
    assert said == [f"pulling {PINNED}"]
    message = str(err.value)
    assert (
        "`docker pull` failed (Error response from daemon: dial tcp: connection refused)" in message
    )
    for hint in (
        "ci/offline_images.py",
        "ci/provision-docker.sh",
        "--base-image",
        "AIRNUB_BASE_IMAGE",
    ):
        assert hint in message


def test_a_base_not_pinned_by_digest_is_never_pulled(docker: FakeDocker) -> None:
    with pytest.raises(RuntimeError, match="not pinned by digest") as err:
        build.ensure_base_image("airnub/base:bookworm", log=pytest.fail)
    assert "ci/offline_images.py" in str(err.value)
    assert not any(c[:2] == ["docker", "pull"] for c in docker.calls)
