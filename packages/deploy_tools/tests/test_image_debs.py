"""The Debian packages of the worker image: the lock, the mirrors read from apt's sources,
and every fetched .deb checked against its pinned SHA-256 (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from deploy_tools.image import debs


def test_the_lock_pins_git_and_its_dependencies() -> None:
    locked = debs.read_lock()
    names = {d.name for d in locked}
    assert {"git", "libcurl3-gnutls"} <= names
    assert debs.requested() == ["git"]
    for d in locked:
        assert d.path.startswith("pool/") and d.path.endswith(f"_{d.arch}.deb"), d
    subprocess.run(["sh", "-n", str(debs.INSTALLER)], check=True)


def test_mirrors_come_from_the_environment_or_apt_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert debs.mirrors({debs.MIRRORS_ENV: "http://a/debian http://b/x/"}) == [
        "http://a/debian",
        "http://b/x/",
    ]
    (tmp_path / "main.sources").write_text(
        "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm\n\n"
        "Types: deb-src\nURIs: http://src.invalid/debian\n\n"
        "Types: deb\nURIs: http://off.invalid/x\nEnabled: no\n\n"
        "Types: deb\nURIs: http://m.invalid/debian-security/\n"
    )
    (tmp_path / "extra.list").write_text("deb [arch=amd64] http://l.invalid/d bookworm main\n")
    monkeypatch.setattr(debs, "SOURCES_DIR", tmp_path)
    monkeypatch.setattr(debs, "SOURCES_LIST", tmp_path / "none")
    assert debs.mirrors({}) == [
        "http://m.invalid/debian",
        "http://m.invalid/debian-security",
        "http://l.invalid/d",
    ]


def test_the_base_image_s_own_mirror_comes_after_the_host_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "host.list").write_text("deb http://host.invalid/debian bookworm main\n")
    monkeypatch.setattr(debs, "SOURCES_DIR", tmp_path)
    monkeypatch.setattr(debs, "SOURCES_LIST", tmp_path / "none")
    seen: list[str] = []

    def image_sources(image: str) -> str:
        seen.append(image)
        return "Types: deb\nURIs: http://base.invalid/debian\n"

    monkeypatch.setattr(debs, "image_sources", image_sources)
    found = debs.mirrors({}, base_image="some/base:tag")
    assert found == ["http://host.invalid/debian", "http://base.invalid/debian"]
    assert seen == ["some/base:tag"]


def test_fetch_checks_each_file_and_tries_the_next_mirror(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"not really a deb"
    deb = debs.Deb(
        "p", "1.0", "amd64", hashlib.sha256(body).hexdigest(), "pool/main/p/p_1.0_amd64.deb"
    )
    httpserver.expect_request("/bad/pool/main/p/p_1.0_amd64.deb").respond_with_data(b"tampered")
    httpserver.expect_request("/good/pool/main/p/p_1.0_amd64.deb").respond_with_data(body)
    mirrors = f"{httpserver.url_for('/missing')} {httpserver.url_for('/bad')} {httpserver.url_for('/good')}"
    monkeypatch.setenv(debs.MIRRORS_ENV, mirrors)
    (out,) = debs.fetch([deb], tmp_path / "cache", tmp_path / "ctx")
    assert out.read_bytes() == body
    # from the cache now: no mirror is asked
    monkeypatch.setenv(debs.MIRRORS_ENV, httpserver.url_for("/bad"))
    (again,) = debs.fetch([deb], tmp_path / "cache", tmp_path / "ctx2")
    assert again.read_bytes() == body
    (tmp_path / "cache" / deb.file_name).write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match=r"cannot fetch p_1\.0_amd64\.deb .*SHA-256 differs"):
        debs.fetch([deb], tmp_path / "cache", tmp_path / "ctx3")
    assert not (tmp_path / "cache" / deb.file_name).exists()
