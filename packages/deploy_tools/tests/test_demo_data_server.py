"""The demo-data server of both modes, on a real socket: files of each project, nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deploy_tools.local.stack.demo_data import DemoDataHandler, demo_data_folder


@pytest.fixture
def server(checkout: Path, tmp_path: Path) -> Iterator[str]:
    beta = tmp_path / "beta"
    (beta / "sub").mkdir(parents=True)
    (beta / "sub" / "x.csv").write_text("a\n1\n")
    (tmp_path / "secret.txt").write_text("not served")
    folders = {"alpha": demo_data_folder("airnub_fixture_alpha.demo_data"), "beta": beta}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(DemoDataHandler, folders=folders))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_each_project_folder_is_served_under_its_name(server: str, checkout: Path) -> None:
    cities = httpx.get(f"{server}/alpha/cities.csv")
    assert cities.status_code == 200
    demo = checkout / "packages" / "fixture_alpha" / "src" / "airnub_fixture_alpha" / "demo_data"
    assert cities.content == (demo / "cities.csv").read_bytes()
    assert httpx.get(f"{server}/beta/sub/x.csv").text == "a\n1\n"
    root = httpx.get(f"{server}/")
    assert (root.status_code, root.text) == (200, "alpha/\nbeta/\n")


@pytest.mark.parametrize(
    "path",
    [
        "/gamma/x.csv",
        "/beta/../secret.txt",
        "/beta/%2e%2e/secret.txt",
        "/beta/nope.csv",
        "/secret.txt",
    ],
)
def test_nothing_outside_a_project_folder_is_served(server: str, path: str) -> None:
    resp = httpx.get(f"{server}{path}")
    assert resp.status_code == 404
    assert "not served" not in resp.text
