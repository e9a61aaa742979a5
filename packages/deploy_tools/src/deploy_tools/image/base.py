"""Make an offline Debian base image with debootstrap and load it into Docker.

No registry is reachable on some machines (and in CI), so the official Python image cannot be
pulled there. This builds a minimal Debian with Debian's python3 from the apt mirror, packs it as
a normalised one-layer image with fixed timestamps (same packages ⇒ same image id) and
`docker load`s it. Standard library only: `ci/provision-docker.sh` runs it before any venv exists::

    PYTHONPATH=packages/deploy_tools/src python3 -m deploy_tools.image.base --tag airnub/base:bookworm
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

#: 2025-05-20T00:00:00Z — the date of the Debian snapshot this machine's mirror serves.
DEFAULT_EPOCH = 1747699200
DEFAULT_TAG = "airnub/base:bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
SOURCES_DIR = Path("/etc/apt/sources.list.d")

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


def scrub(rootfs: Path) -> None:
    """Remove run-to-run noise (caches, logs, device nodes, host files) from a root filesystem."""
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


def write_docker_archive(layer: Path, dest: Path, tag: str, epoch: int) -> str:
    """Wrap one layer tar as a `docker load`-able archive; return the image id (config digest)."""
    diff_id = hashlib.sha256(layer.read_bytes()).hexdigest()
    created = datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["/bin/bash"],
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [
            {
                "created": created,
                "created_by": f"debootstrap --variant=minbase --include={','.join(PACKAGES)} bookworm",
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


def make_base_image(
    tag: str = DEFAULT_TAG, epoch: int = DEFAULT_EPOCH, suite: str = "bookworm"
) -> str:
    """Debootstrap a minimal Debian with python3, pack it and `docker load` it; return its id."""
    with tempfile.TemporaryDirectory(prefix="airnub-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite,
             str(rootfs), debian_mirror()],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        scrub(rootfs)
        layer = Path(tmp) / "layer.tar"
        pack_layer(rootfs, layer, epoch)
        shutil.rmtree(rootfs)
        archive = Path(tmp) / "image.tar"
        image_id = write_docker_archive(layer, archive, tag, epoch)
        subprocess.run(["docker", "load", "-i", str(archive)], check=True)
    return image_id


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m deploy_tools.image.base [--tag T] [--epoch N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--epoch", type=int, default=DEFAULT_EPOCH)
    parser.add_argument("--suite", default="bookworm")
    args = parser.parse_args(argv)
    print(make_base_image(args.tag, args.epoch, args.suite))


if __name__ == "__main__":
    main()
