"""`image build` pulls a missing base pinned by digest, from a registry on 127.0.0.1 only.

Debian's docker-registry serves on 127.0.0.1:<free port> (filesystem storage in a temporary
folder, no auth); the offline base is pushed there, its registry tag removed, and the base is
pulled back by digest. A reference on a closed port is refused with the offline alternative.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy_tools.image.build import ensure_base_image, image_present

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path, base_image: str) -> Iterator[str]:
    """`docker-registry serve` on 127.0.0.1:<free port>; stopped by its PID."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (run ci/provision-docker.sh)")
    port = _free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = tmp_path / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_missing_base_is_pulled_by_digest_and_said(registry: str, base_image: str) -> None:
    start = time.monotonic()
    tag = f"{registry}/base:pull-test"
    _docker("tag", base_image, tag)
    pulled = None
    try:
        pushed = _docker("push", tag)
        digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
        assert digest, pushed
        pulled = f"{registry}/base@{digest.group(1)}"
    finally:
        _docker("rmi", tag)  # only the registry tag: the base keeps its own name
    try:
        assert not image_present(pulled)
        said: list[str] = []
        assert ensure_base_image(pulled, log=said.append) is True
        assert said == [f"pulling {pulled}", f"pulled {pulled}"]
        assert image_present(pulled)
        assert ensure_base_image(pulled, log=said.append) is False  # there now: no second pull
    finally:
        subprocess.run(["docker", "rmi", pulled], capture_output=True)
    assert image_present(base_image)
    assert time.monotonic() - start < 30


def test_unreachable_registry_is_refused_with_the_offline_hint(base_image: str) -> None:
    ref = f"127.0.0.1:{_free_port()}/base@sha256:{'0' * 64}"  # nothing listens there
    said: list[str] = []
    with pytest.raises(RuntimeError) as err:
        ensure_base_image(ref, log=said.append, timeout=30)
    assert said == [f"pulling {ref}"]
    message = str(err.value)
    assert "`docker pull` failed" in message
    assert "connection refused" in message
    for hint in (
        "ci/offline_images.py",
        "ci/provision-docker.sh",
        "--base-image",
        "AIRNUB_BASE_IMAGE",
    ):
        assert hint in message
