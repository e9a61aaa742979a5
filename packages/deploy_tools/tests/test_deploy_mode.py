"""`deploy local --mode auto`: compose when a Docker engine answers, else process; it says so."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy_tools.local.stack.mode import Mode, docker_answers, resolve_mode
from deploy_tools.settings import load_settings


class _UnixHTTPServer(socketserver.UnixStreamServer):
    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) address


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/_ping" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on a unix socket answering `/_ping` like a Docker engine."""
    sock = tmp_path / "docker.sock"
    server = _UnixHTTPServer(str(sock), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{sock}"
    server.shutdown()
    server.server_close()


def test_no_engine_means_process_and_says_how_to_pick_compose(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    settings = load_settings(checkout)  # DOCKER_HOST reaches the settings object
    assert settings.docker_host == f"unix://{tmp_path}/absent.sock"
    assert docker_answers(settings.docker_host) is False
    notes: list[str] = []
    assert resolve_mode(Mode.auto, settings, notes.append) is Mode.process
    assert notes == [
        f"mode: process (no Docker engine answers at unix://{tmp_path}/absent.sock); start "
        "one, or set DOCKER_HOST, and pass `--mode compose` for PostgreSQL and containers"
    ]


def test_an_engine_that_answers_means_compose_and_says_how_to_pick_process(
    checkout: Path, fake_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", fake_engine)
    settings = load_settings(checkout)
    assert docker_answers(settings.docker_host) is True
    notes: list[str] = []
    assert resolve_mode(Mode.auto, settings, notes.append) is Mode.compose
    assert notes == [
        f"mode: compose (a Docker engine answers at {fake_engine}); `--mode process` runs the "
        "stack as local processes instead"
    ]


@pytest.mark.parametrize("mode", [Mode.process, Mode.compose])
def test_an_explicit_mode_is_kept_and_says_nothing(checkout: Path, mode: Mode) -> None:
    notes: list[str] = []
    assert resolve_mode(mode, load_settings(checkout), notes.append) is mode
    assert notes == []
