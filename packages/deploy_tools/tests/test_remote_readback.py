"""Without Docker: the remote's Prefect version against the lock's (also through a tiny real HTTP
stand-in on loopback that answers another version, with basic auth), the classification of
deployments after a failed `prefect deploy`, and the one line said of its output."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deploy_tools.prefect_api import version_skew
from deploy_tools.remote import readback
from deploy_tools.remote.readback import Seen, classify
from deploy_tools.remote.service import RemoteTarget, deploy_remote, failure_cause
from deploy_tools.reporting import DeployError
from deploy_tools.settings import load_settings

if TYPE_CHECKING:
    from conftest import RecordingReporter


LOCKED = version("prefect")
AUTH = "airnub:stand-in-secret"


@pytest.mark.parametrize(
    ("server", "client", "skew"),
    [
        ("3.9.1", "3.9.1", "same"),
        ("3.9.7", "3.9.1", "same"),  # a patch release
        ("3.9.0rc1", "3.9.1", "same"),
        ("3.4.2", "3.9.1", "minor"),
        ("3.10.0", "3.9.1", "minor"),
        ("2.20.3", "3.9.1", "major"),
        ("4.0.0", "3.9.1", "major"),
        ("not-a-version", "3.9.1", "unknown"),
    ],
)
def test_version_skew(server: str, client: str, skew: str) -> None:
    assert version_skew(server, client) == skew


A, B, C, D = (("m:a", "docker"), ("m:b", "docker"), ("m:c", "docker"), ("m:d", "docker"))


def test_each_intended_deployment_is_new_updated_unchanged_or_missing() -> None:
    before = {
        B: Seen("id-b", "2026-01-01T00:00:00", "r/img@sha256:old"),
        C: Seen("id-c", "2026-01-01T00:00:00", "r/img@sha256:old"),
        D: Seen("id-d", "2026-01-01T00:00:00", "r/img@sha256:old"),
    }
    after = {
        A: Seen("id-a", "2026-01-02T00:00:00", "r/img@sha256:new"),
        B: Seen("id-b", "2026-01-02T00:00:00", "r/img@sha256:new"),
        C: Seen("id-c", "2026-01-01T00:00:00", "r/img@sha256:old"),
    }
    assert classify([A, B, C, D], before, after) == [
        (A, "new"), (B, "updated"), (C, "unchanged"), (D, "missing"),
    ]  # fmt: skip


def test_a_deployment_made_again_is_new_and_an_image_change_alone_is_updated() -> None:
    before = {A: Seen("id-1", "t", "img1"), B: Seen("id-b", "t", "img1")}
    after = {A: Seen("id-2", "t", "img1"), B: Seen("id-b", "t", "img2")}
    assert classify([A, B], before, after) == [(A, "new"), (B, "updated")]


def test_the_report_lists_each_state_and_what_still_runs_the_old_image(
    monkeypatch: pytest.MonkeyPatch,
    reporter: RecordingReporter,
) -> None:
    before = {B: Seen("id-b", "t0", "img@old")}
    after = {A: Seen("id-a", "t1", "img@new"), B: Seen("id-b", "t0", "img@old")}
    monkeypatch.setattr(readback, "wait_until_answering", lambda url, timeout: True)
    monkeypatch.setattr(readback, "read_deployments", lambda url, keys: after)
    line = readback.report_partial(reporter, "http://r/api", [A, B, C], before, "img@new")
    assert reporter.of("failure") == [
        "the Prefect server at http://r/api now has, of the 3 deployment(s):",
        "  new       m:a (docker)",
        "  unchanged m:b (docker) (still image img@old, not img@new)",
        "  missing   m:c (docker)",
    ]
    assert "(1 new, 0 updated, 1 unchanged, 1 missing)" in line
    assert "run `deploy remote` again" in line


def test_a_server_that_stays_away_is_said_unknown_with_what_it_had_before(
    reporter: RecordingReporter,
) -> None:
    before = {B: Seen("id-b", "t0", "img@old")}
    line = readback.report_partial(reporter, "http://127.0.0.1:9/api", [A, B], before, "img@new",
                                   wait=0)  # fmt: skip
    assert reporter.of("failure") == [
        "what the Prefect server at http://127.0.0.1:9/api holds now is unknown: it did not "
        "answer within 0 s.",
        "before this deploy it had 1 of the 2 deployment(s):",
        "  m:a (docker): absent",
        "  m:b (docker): image img@old",
    ]
    assert line.startswith("run `deploy remote` again once the server answers")


@pytest.mark.parametrize(
    ("output", "cause"),
    [
        ("Traceback (most recent call last):\n  File 'x', line 1\n"
         "prefect.exceptions.DeploymentApplyError: Error creating deployment: 500\n"
         "An exception occurred.\n", "prefect.exceptions.DeploymentApplyError: Error creating "
         "deployment: 500"),
        ("  raise ReadError\nhttpx.ReadError: [Errno 104] Connection reset by peer\n",
         "httpx.ReadError: [Errno 104] Connection reset by peer"),
        ("Deployment 'x' not found\n\n", "Deployment 'x' not found"),
        ("", "no output"),
    ],
)  # fmt: skip
def test_the_cause_of_a_failed_prefect_deploy_is_one_line(output: str, cause: str) -> None:
    assert failure_cause(output) == cause


# -- a tiny Prefect API on loopback answering another version -------------------------------
class StandIn:
    """An HTTP server on 127.0.0.1 that answers /api/admin/version with `version` (behind basic
    auth), an empty list to any POST, 404 to other GETs; it records each request line."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: object, status: int = 200) -> None:
                stand_in.requests.append(f"{self.command} {self.path}")
                expected = "Basic " + base64.b64encode(AUTH.encode()).decode()
                if self.path != "/api/health" and self.headers.get("Authorization") != expected:
                    body, status = {"exception_message": "Unauthorized"}, 401
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/admin/version":
                    self._answer(stand_in.version)
                elif self.path == "/api/health":
                    self._answer(True)
                else:  # e.g. /api/csrf-token: 404 is an older server's answer (no CSRF)
                    self._answer({"detail": "Not Found"}, 404)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer([])

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/api"


@pytest.fixture
def stand_in() -> Iterator[Callable[[str], StandIn]]:
    started: list[StandIn] = []

    def start(version: str) -> StandIn:
        s = StandIn(version)
        threading.Thread(target=s.server.serve_forever, daemon=True).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.server.shutdown()
        s.server.server_close()


@pytest.fixture
def auth(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stand-in's basic auth for Prefect's client, and a demo-data URL for the files."""
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    monkeypatch.setenv("AIRNUB_DEMO_DATA_URL", "https://files.example.com")
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: AUTH}):
        yield


def test_another_major_version_is_refused_before_anything_is_built(
    checkout: Path,
    stand_in: Callable[[str], StandIn],
    auth: None,
    monkeypatch: pytest.MonkeyPatch,
    reporter: RecordingReporter,
) -> None:
    from deploy_tools.remote import steps

    def no_build(*args: object, **kwargs: object) -> dict[str, str]:
        raise AssertionError("built although the server's major version differs")

    monkeypatch.setattr(steps, "build_image", no_build)
    server = stand_in("4.0.0")
    target = RemoteTarget(server.api_url, "127.0.0.1:9", "airnub-worker:never")
    with pytest.raises(DeployError) as refused:
        deploy_remote(load_settings(checkout), reporter, target)
    assert str(refused.value).startswith(
        f"the Prefect server at {server.api_url} runs Prefect 4.0.0, this checkout's lock has "
        f"prefect {LOCKED}: another major version, refused; nothing was built, pushed or applied"
    )
    # the version was read first, and nothing but reads reached the server
    asked = [r for r in server.requests if "/csrf-token" not in r]
    assert asked == ["GET /api/admin/version", "POST /api/work_pools/filter"]


def test_another_minor_version_is_a_warning_naming_both(
    checkout: Path, stand_in: Callable[[str], StandIn], auth: None, reporter: RecordingReporter
) -> None:
    server = stand_in("3.4.2")
    target = RemoteTarget(server.api_url, "127.0.0.1:9", "airnub-worker:never")
    result = deploy_remote(load_settings(checkout), reporter, target, dry_run=True)
    assert result.deployments  # the dry run went on
    assert reporter.of("failure") == [
        f"warning: the Prefect server at {server.api_url} runs Prefect 3.4.2, this checkout's "
        f"lock has prefect {LOCKED}: deploying anyway (same major version); upgrade the server "
        "if a deployment or a flow run fails"
    ]
    assert f"api: {server.api_url} answers and accepts the credentials (Prefect 3.4.2)" in (
        reporter.of("finished")
    )
    assert server.requests[0] == "GET /api/admin/version"


def test_the_same_minor_version_says_nothing(
    checkout: Path, stand_in: Callable[[str], StandIn], auth: None, reporter: RecordingReporter
) -> None:
    server = stand_in(LOCKED)
    target = RemoteTarget(server.api_url, "127.0.0.1:9", "airnub-worker:never")
    deploy_remote(load_settings(checkout), reporter, target, dry_run=True)
    assert reporter.of("failure") == []
