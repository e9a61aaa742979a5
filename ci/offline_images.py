#!/usr/bin/env python3
"""Make offline stand-ins for the official Python and PostgreSQL images and load them into Docker.

Only this project's CI needs these: its machine reaches no container registry, so the images
that users pull (Dockerfile.worker's digest-pinned Python base, deploy/compose.yaml's
PostgreSQL) cannot be pulled there. This builds a minimal Debian with Debian's packages from the
apt mirror, packs it as a normalised one-layer image with fixed timestamps (same packages ⇒ same
image id) and `docker load`s it. Two images (`ImageSpec`): `base` (python3) and `postgres`
(PostgreSQL 15, bookworm's, the major deploy/compose.yaml pins, behind ci/postgres-entrypoint.sh
with the official `postgres` image's interface). Standard library only: ci/provision-docker.sh
runs it before any venv exists::

    python3 ci/offline_images.py --tag airnub/base:bookworm
    python3 ci/offline_images.py --image postgres [--tag airnub/postgres:15-bookworm]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

#: 2025-05-20T00:00:00Z — the date of the Debian snapshot this machine's mirror serves.
DEFAULT_EPOCH = 1747699200
DEFAULT_TAG = "airnub/base:bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
#: The base image's run config (the `config` object of its image config).
BASE_CONFIG: dict[str, object] = {
    "Env": [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    ],
    "Cmd": ["/bin/bash"],
}
#: The major of deploy/compose.yaml's official image (tests/ci checks they agree): bookworm ships 15.
PG_MAJOR = "15"
#: The official `postgres` image's uid and gid (Debian's adduser would pick 100:102 here).
POSTGRES_UID = 999
POSTGRES_ENTRYPOINT = Path(__file__).with_name("postgres-entrypoint.sh")

# Paths inside the root filesystem whose content differs run to run (caches, logs, host files).
_SCRUB = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "var/cache/ldconfig",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "dev",
    "tmp",
    "run",
    "proc",
    "sys",
)
_EMPTY_FILES = ("etc/resolv.conf", "etc/hostname", "etc/machine-id")


def debian_mirror(sources_dir: Path = SOURCES_DIR) -> str:
    """Return the first non-security Debian mirror URL configured for apt.

    Example: ``debian_mirror()`` → ``"http://<mirror>/debian"`` (read at run time, never stored).
    """
    for path in sorted(sources_dir.glob("*.sources")) + sorted(sources_dir.glob("*.list")):
        for line in path.read_text().splitlines():
            uri = None
            if (m := re.match(r"^URIs:\s*(\S+)", line)) or (
                m := re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            ):
                uri = m.group(1)
            if uri and uri.rstrip("/").endswith("/debian"):
                return uri
    raise RuntimeError(f"no Debian mirror found in {sources_dir}")


def scrub(rootfs: Path, epoch: int = DEFAULT_EPOCH) -> None:
    """Remove run-to-run noise (caches, logs, device nodes, host files) from a root filesystem.

    The "last password change" day of every /etc/shadow entry becomes the epoch's day (useradd
    writes the day of the build).
    """
    for rel in _SCRUB:
        path = rootfs / rel
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif path.exists() or path.is_symlink():
            path.unlink()
    for rel in _EMPTY_FILES:
        path = rootfs / rel
        if path.exists() or path.is_symlink():
            path.unlink()
            path.write_text("")
    shadow = rootfs / "etc/shadow"
    if shadow.is_file():
        lines = []
        for line in shadow.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                fields[2] = str(epoch // 86400)
            lines.append(":".join(fields))
        shadow.write_text("".join(line + "\n" for line in lines))


def pack_layer(rootfs: Path, dest: Path, epoch: int) -> None:
    """Write ``rootfs`` as a tar with sorted names, clamped mtimes and no atime/ctime."""
    subprocess.run(
        [
            "tar", "--sort=name", f"--mtime=@{epoch}", "--clamp-mtime", "--numeric-owner",
            "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "-C", str(rootfs), "-cf", str(dest), ".",
        ],
        check=True,
    )  # fmt: skip


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = epoch
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(
    layer: Path,
    dest: Path,
    tag: str,
    epoch: int,
    run_config: dict[str, object] | None = None,
    packages: tuple[str, ...] = PACKAGES,
) -> str:
    """Wrap one layer tar as a `docker load`-able archive; return the image id (config digest).

    ``run_config`` is the image config's ``config`` object (Env, Cmd, …); default the base's.
    """
    diff_id = hashlib.sha256(layer.read_bytes()).hexdigest()
    created = datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": BASE_CONFIG if run_config is None else run_config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [
            {
                "created": created,
                "created_by": f"debootstrap --variant=minbase --include={','.join(packages)} bookworm",
            }
        ],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_id = hashlib.sha256(config_bytes).hexdigest()
    manifest = [
        {"Config": f"{config_id}.json", "RepoTags": [tag], "Layers": [f"{diff_id}/layer.tar"]}
    ]
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, f"{config_id}.json", config_bytes, epoch)
        info = tar.gettarinfo(str(layer), arcname=f"{diff_id}/layer.tar")
        info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
        with layer.open("rb") as fh:
            tar.addfile(info, fh)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode(), epoch)
    return f"sha256:{config_id}"


def set_user_ids(rootfs: Path, name: str, uid: int, gid: int) -> None:
    """Give user and group ``name`` these ids in /etc/passwd and /etc/group, and re-own its files."""
    old: dict[str, int] = {}  # "etc/passwd" → old uid, "etc/group" → old gid
    for rel, ids in (("etc/passwd", [uid, gid]), ("etc/group", [gid])):
        path = rootfs / rel
        lines = []
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                old[rel] = int(fields[2])
                fields[2 : 2 + len(ids)] = map(str, ids)
            lines.append(":".join(fields))
        path.write_text("".join(line + "\n" for line in lines))
    if len(old) != 2:
        raise RuntimeError(f"no user and group {name!r} in {rootfs}/etc")
    old_uid, old_gid = old["etc/passwd"], old["etc/group"]
    for top, dirs, files in os.walk(rootfs):
        for entry in [top, *(os.path.join(top, n) for n in dirs + files)]:
            st = os.lstat(entry)
            if st.st_uid == old_uid or st.st_gid == old_gid:
                os.lchown(
                    entry,
                    uid if st.st_uid == old_uid else -1,
                    gid if st.st_gid == old_gid else -1,
                )


def finish_postgres(rootfs: Path) -> None:
    """Turn a debootstrapped rootfs with Debian's postgresql-15 into an official-style image.

    Drops the cluster and snakeoil TLS key that the packages' postinst made (random content),
    stops future package installs from creating a cluster, gives `postgres` the official image's
    ids 999:999, and adds the entrypoint, the socket folder and an empty PGDATA.
    """
    for rel in (f"var/lib/postgresql/{PG_MAJOR}", f"etc/postgresql/{PG_MAJOR}"):
        if (rootfs / rel).is_dir():
            shutil.rmtree(rootfs / rel)
    certs = rootfs / "etc/ssl/certs"
    for path in sorted(certs.iterdir()) if certs.is_dir() else []:
        if path.name.startswith("ssl-cert-snakeoil") or (
            path.is_symlink() and os.readlink(path).startswith("ssl-cert-snakeoil")
        ):
            path.unlink()
    (rootfs / "etc/ssl/private/ssl-cert-snakeoil.key").unlink(missing_ok=True)
    conf = rootfs / "etc/postgresql-common/createcluster.conf"
    text = re.sub(r"^#?\s*create_main_cluster\s*=.*$", "create_main_cluster = false",
                  conf.read_text(), flags=re.MULTILINE)  # fmt: skip
    conf.write_text(text)
    set_user_ids(rootfs, "postgres", POSTGRES_UID, POSTGRES_UID)
    entrypoint = rootfs / "usr/local/bin/docker-entrypoint.sh"
    shutil.copyfile(POSTGRES_ENTRYPOINT, entrypoint)
    entrypoint.chmod(0o755)
    for rel, mode in (("run/postgresql", 0o3777), ("var/lib/postgresql/data", 0o700)):
        path = rootfs / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, POSTGRES_UID, POSTGRES_UID)
        path.chmod(mode)


@dataclass(frozen=True)
class ImageSpec:
    """One debootstrap image: its packages, its run config and a last edit of its rootfs."""

    tag: str
    packages: tuple[str, ...]
    run_config: dict[str, object] = field(default_factory=lambda: dict(BASE_CONFIG))
    finish: Callable[[Path], None] | None = None


BASE = ImageSpec(DEFAULT_TAG, PACKAGES)
POSTGRES = ImageSpec(
    "airnub/postgres:15-bookworm",
    (f"postgresql-{PG_MAJOR}", f"postgresql-client-{PG_MAJOR}"),
    {
        # The official image's interface: same variables, entrypoint name, command, port,
        # volume and stop signal (SIGINT: PostgreSQL's "fast" shutdown).
        "Env": [
            f"PATH=/usr/lib/postgresql/{PG_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin"
            ":/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            f"PG_MAJOR={PG_MAJOR}",
            "PGDATA=/var/lib/postgresql/data",
        ],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["postgres"],
        "ExposedPorts": {"5432/tcp": {}},
        "Volumes": {"/var/lib/postgresql/data": {}},
        "StopSignal": "SIGINT",
    },
    finish_postgres,
)
IMAGES = {"base": BASE, "postgres": POSTGRES}


def make_image(
    spec: ImageSpec, tag: str | None = None, epoch: int = DEFAULT_EPOCH, suite: str = "bookworm"
) -> str:
    """Debootstrap ``spec``'s packages, finish, pack and `docker load` it; return its id."""
    with tempfile.TemporaryDirectory(prefix="airnub-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(spec.packages)}", suite,
             str(rootfs), debian_mirror()],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        scrub(rootfs, epoch)
        if spec.finish is not None:
            spec.finish(rootfs)
        layer = Path(tmp) / "layer.tar"
        pack_layer(rootfs, layer, epoch)
        shutil.rmtree(rootfs)
        archive = Path(tmp) / "image.tar"
        image_id = write_docker_archive(
            layer, archive, tag or spec.tag, epoch, spec.run_config, spec.packages
        )
        subprocess.run(["docker", "load", "-i", str(archive)], check=True)
    return image_id


def make_base_image(
    tag: str = DEFAULT_TAG, epoch: int = DEFAULT_EPOCH, suite: str = "bookworm"
) -> str:
    """Debootstrap a minimal Debian with python3, pack it and `docker load` it; return its id."""
    return make_image(BASE, tag, epoch, suite)


def make_postgres_image(
    tag: str = POSTGRES.tag, epoch: int = DEFAULT_EPOCH, suite: str = "bookworm"
) -> str:
    """The same with Debian's PostgreSQL 15 and an official-style entrypoint; return its id."""
    return make_image(POSTGRES, tag, epoch, suite)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python3 ci/offline_images.py [--image base|postgres] [--tag T]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", choices=sorted(IMAGES), default="base")
    parser.add_argument(
        "--tag", help="default: airnub/base:bookworm or airnub/postgres:15-bookworm"
    )
    parser.add_argument("--epoch", type=int, default=DEFAULT_EPOCH)
    parser.add_argument("--suite", default="bookworm")
    args = parser.parse_args(argv)
    print(make_image(IMAGES[args.image], args.tag, args.epoch, args.suite))


if __name__ == "__main__":
    main()
