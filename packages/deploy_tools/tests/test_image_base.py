"""Offline base image helpers: mirror discovery, scrubbing, a deterministic docker archive."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from deploy_tools.image import base
from deploy_tools.image.scan import holds_private_key


def test_mirror_is_read_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\n"
    )
    assert base.debian_mirror(tmp_path) == "http://mirror.invalid/debian"


def test_no_mirror_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no Debian mirror"):
        base.debian_mirror(tmp_path)


def test_scrub_removes_noise(tmp_path: Path) -> None:
    for rel in ("var/log/apt/history.log", "var/cache/apt/pkgcache.bin", "etc/resolv.conf"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("noise")
    base.scrub(tmp_path)
    assert list((tmp_path / "var/log").iterdir()) == []
    assert list((tmp_path / "var/cache/apt").iterdir()) == []
    assert (tmp_path / "etc/resolv.conf").read_text() == ""


def test_docker_archive_is_deterministic(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    one = base.write_docker_archive(layer, tmp_path / "1.tar", "x:y", 100)
    two = base.write_docker_archive(layer, tmp_path / "2.tar", "x:y", 100)
    assert one == two
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
    with tarfile.open(tmp_path / "1.tar") as tar:
        fh = tar.extractfile("manifest.json")
        assert fh is not None
        manifest = json.load(fh)
    assert manifest[0]["RepoTags"] == ["x:y"]


def test_private_key_detector() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 2
    assert holds_private_key(f"-----BEGIN PRIVATE KEY-----\n{body}\n".encode())
    assert holds_private_key(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n".encode())
    # The bare header string (as in TLS libraries) is not a key.
    assert not holds_private_key(b'fmt = "-----BEGIN PRIVATE KEY-----";')
