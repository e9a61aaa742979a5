"""ci/offline_images.py (CI's stand-ins for the official images): mirror discovery, scrubbing,
a deterministic docker archive, the PostgreSQL spec and entrypoint."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from deploy_tools.settings import compose_postgres_image
from tests.ci.conftest import REPO_ROOT, load_ci_script

base = load_ci_script("offline_images")


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


def test_scrub_fixes_the_shadow_day_and_drops_backups(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/shadow").write_text("root:*:20786:0:99999:7:::\npostgres:!:20786::::::\n")
    (tmp_path / "etc/shadow-").write_text("root:*:20786:0:99999:7:::\n")
    base.scrub(tmp_path, epoch=86400 * 20000 + 5)
    assert (tmp_path / "etc/shadow").read_text() == (
        "root:*:20000:0:99999:7:::\npostgres:!:20000::::::\n"
    )
    assert not (tmp_path / "etc/shadow-").exists()


def test_base_spec_keeps_the_base_config(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w"):
        pass
    spec = base.IMAGES["base"]
    assert (spec.tag, spec.packages, spec.finish) == (base.DEFAULT_TAG, base.PACKAGES, None)
    assert base.write_docker_archive(
        layer, tmp_path / "a.tar", "x:y", 1, spec.run_config, spec.packages
    ) == base.write_docker_archive(layer, tmp_path / "b.tar", "x:y", 1)


def test_postgres_spec_has_the_official_interface(tmp_path: Path) -> None:
    spec = base.IMAGES["postgres"]
    assert spec.tag == "airnub/postgres:15-bookworm"
    assert "postgresql-15" in spec.packages
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w"):
        pass
    base.write_docker_archive(layer, tmp_path / "pg.tar", spec.tag, 1, spec.run_config)
    with tarfile.open(tmp_path / "pg.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest[0]["Config"]))["config"]
    assert config["Entrypoint"] == ["docker-entrypoint.sh"]
    assert config["Cmd"] == ["postgres"]
    assert config["ExposedPorts"] == {"5432/tcp": {}}
    assert config["StopSignal"] == "SIGINT"
    assert "PGDATA=/var/lib/postgresql/data" in config["Env"]
    assert config["Env"][0].startswith("PATH=/usr/lib/postgresql/15/bin:")


def test_postgres_stand_in_is_the_major_compose_pins() -> None:
    # CI tests the PostgreSQL users run: deploy/compose.yaml's official image, same major.
    official = compose_postgres_image(REPO_ROOT / "deploy/compose.yaml")
    assert official.startswith(f"postgres:{base.PG_MAJOR}-bookworm@sha256:"), official
    assert base.IMAGES["postgres"].tag == f"airnub/postgres:{base.PG_MAJOR}-bookworm"
    compose = (REPO_ROOT / "deploy/compose.yaml").read_text()
    assert f"pgdata-{base.PG_MAJOR}:/var/lib/postgresql/data" in compose  # a volume per major


def _fake_postgres_rootfs(root: Path) -> None:
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
        "postgres:x:100:102:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n",
        "etc/group": "root:x:0:\nssl-cert:x:101:postgres\npostgres:x:102:\n",
        "etc/postgresql-common/createcluster.conf": "# comment\n#create_main_cluster = true\n",
        "etc/postgresql/15/main/postgresql.conf": "",
        "var/lib/postgresql/15/main/PG_VERSION": "15\n",
        "etc/ssl/certs/ssl-cert-snakeoil.pem": "cert",
        "etc/ssl/private/ssl-cert-snakeoil.key": "key",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "etc/ssl/certs/62742064.0").symlink_to("ssl-cert-snakeoil.pem")
    (root / "usr/local/bin").mkdir(parents=True)
    for rel in ("var/lib/postgresql", "etc/postgresql"):
        os.chown(root / rel, 100, 102)


@pytest.mark.allow_skip
@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_finish_postgres(tmp_path: Path) -> None:
    _fake_postgres_rootfs(tmp_path)
    base.finish_postgres(tmp_path)
    assert "postgres:x:999:999:" in (tmp_path / "etc/passwd").read_text()
    assert "postgres:x:999:\n" in (tmp_path / "etc/group").read_text()
    assert "ssl-cert:x:101:postgres" in (tmp_path / "etc/group").read_text()
    assert (tmp_path / "var/lib/postgresql").stat().st_uid == 999
    assert (tmp_path / "etc/postgresql").stat().st_gid == 999
    assert not (tmp_path / "var/lib/postgresql/15").exists()
    assert not (tmp_path / "etc/postgresql/15").exists()
    assert os.listdir(tmp_path / "etc/ssl/certs") == []
    assert os.listdir(tmp_path / "etc/ssl/private") == []
    conf = (tmp_path / "etc/postgresql-common/createcluster.conf").read_text()
    assert "\ncreate_main_cluster = false\n" in conf
    entrypoint = tmp_path / "usr/local/bin/docker-entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o777 == 0o755
    run = (tmp_path / "run/postgresql").stat()
    assert (run.st_uid, run.st_mode & 0o7777) == (999, 0o3777)
    data = (tmp_path / "var/lib/postgresql/data").stat()
    assert (data.st_uid, data.st_gid, data.st_mode & 0o777) == (999, 999, 0o700)


def _entrypoint(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "PGDATA": str(tmp_path / "data"), **env}
    return subprocess.run(
        ["sh", str(base.POSTGRES_ENTRYPOINT), *args], env=full, capture_output=True, text=True
    )


def test_postgres_entrypoint_refuses_to_init_without_a_password(tmp_path: Path) -> None:
    proc = _entrypoint(tmp_path)
    assert proc.returncode == 1
    assert "POSTGRES_PASSWORD is not set" in proc.stderr
    assert not (tmp_path / "data").exists()
    # *_FILE and the variable itself are exclusive.
    (tmp_path / "pw").write_text("x")
    proc = _entrypoint(
        tmp_path, "postgres", POSTGRES_PASSWORD="x", POSTGRES_PASSWORD_FILE=str(tmp_path / "pw")
    )
    assert proc.returncode == 1
    assert "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE" in proc.stderr


def test_postgres_entrypoint_runs_other_commands_as_given(tmp_path: Path) -> None:
    proc = _entrypoint(tmp_path, "echo", "hello")
    assert (proc.returncode, proc.stdout) == (0, "hello\n")
