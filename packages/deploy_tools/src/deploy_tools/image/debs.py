"""Debian packages for the worker image (`git`, for Prefect's `git_clone` pull step), as
hash-pinned .deb files fetched on the host — only for a build with git (`airnub image build
--with-git`, a prefect.yaml build step's `with_git: true`): a default build fetches none.

The build is hermetic (`--network none`), so, like the wheels, the .deb files go into the build
context: each line of `debs.lock` pins a package's version and SHA-256, and the file is
downloaded from a Debian mirror (AIRNUB_DEBIAN_MIRRORS, else the host's and then the base
image's apt sources: no mirror is written in the project), checked,
and cached in `.image/debs`. In the image `install-debs.sh` installs them with dpkg.

The lock holds the closure of `git`'s dependencies (no Recommends) over a minimal Debian (the
base image's Priority: required packages and what they depend on): the same lock serves
python:3.11-slim and the debootstrap base, and the build installs only what the base lacks or
has older. Re-lock, on a Debian host of the base's release, after bumping the base image:

    hatch run python -m deploy_tools.image.debs lock --base-image airnub/base:bookworm git

Debian's mirror keeps only the current version of each package: once a pinned one is
superseded, point AIRNUB_DEBIAN_MIRRORS at a snapshot archive of the same date, or re-lock.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploy_tools.image.wheelhouse import sha256_file
from pipeline_core.urls import redact_urls_in

LOCK = Path(__file__).with_name("debs.lock")
INSTALLER = Path(__file__).with_name("install-debs.sh")
MIRRORS_ENV = "AIRNUB_DEBIAN_MIRRORS"
SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")


@dataclass(frozen=True)
class Deb:
    """One pinned package: `path` is its Filename below a mirror's root (`pool/…`)."""

    name: str
    version: str
    arch: str
    sha256: str
    path: str

    def line(self) -> str:
        return f"{self.name} {self.version} {self.arch} {self.sha256} {self.path}"

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def read_lock(path: Path = LOCK) -> list[Deb]:
    """The pinned packages of `path` (`name version arch sha256 pool-path` a line, # comments)."""
    debs = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 5 or not re.fullmatch(r"[0-9a-f]{64}", fields[3]):
            raise ValueError(f"{path}:{n}: expected `name version arch sha256 pool-path`")
        debs.append(Deb(*fields))
    return debs


def source_uris(text: str) -> list[str]:
    """The `deb` URIs of apt sources text: deb822 paragraphs (`Types: deb`, `URIs:`, not
    `Enabled: no`) and one-line `deb [options] URI suite …` entries."""
    found: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        types = re.search(r"^Types:(.*)$", para, re.M)
        enabled = not re.search(r"^Enabled:\s*no", para, re.M | re.I)
        if types and "deb" in types.group(1).split() and enabled:
            for m in re.finditer(r"^URIs:\s*(.+)$", para, re.M):
                found += m.group(1).split()
    found += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M)
    return found


def image_sources(image: str) -> str:
    """The apt sources files of `image` (its own Debian mirror), read offline."""
    return subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "sh",
         image, "-c", "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null; echo"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip


def mirrors(environ: dict[str, str] | None = None, base_image: str | None = None) -> list[str]:
    """Mirror roots to try, in order: AIRNUB_DEBIAN_MIRRORS (space-separated) alone when set;
    else the `deb` URIs of the host's apt sources, then those of `base_image` (a Debian base
    names its own mirror: a macOS or Ubuntu host needs no setting)."""
    env = os.environ if environ is None else environ
    if env.get(MIRRORS_ENV):
        return env[MIRRORS_ENV].split()
    files = sorted(SOURCES_DIR.glob("*.sources")) + sorted(SOURCES_DIR.glob("*.list"))
    texts = [f.read_text() for f in [SOURCES_LIST, *files] if f.is_file()]
    if base_image is not None:
        texts.append(image_sources(base_image))
    found = [uri for text in texts for uri in source_uris(text)]
    return list(dict.fromkeys(u.rstrip("/") for u in found))


def _download(deb: Deb, roots: list[str], out: Path) -> None:
    import httpx

    tried = []
    for root in roots:
        try:
            with (
                httpx.stream(
                    "GET", f"{root}/{deb.path}", timeout=60, follow_redirects=True
                ) as resp,
                out.open("wb") as fh,
            ):
                resp.raise_for_status()
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
        except (httpx.HTTPError, OSError) as exc:
            tried.append(f"{root}: {exc}")
            continue
        if sha256_file(out) == deb.sha256:
            return
        tried.append(f"{root}: SHA-256 differs from the lock")
    out.unlink(missing_ok=True)
    raise RuntimeError(redact_urls_in(
        f"cannot fetch {deb.file_name} ({deb.name} {deb.version}) with the locked SHA-256 from "
        f"any mirror ({'; '.join(tried) or f'none configured: set {MIRRORS_ENV}'}); a superseded "
        f"version is only on a snapshot archive (set {MIRRORS_ENV}), or re-lock (see {LOCK.name})"
    ))  # fmt: skip


def fetch(debs: list[Deb], cache: Path, dest: Path, base_image: str | None = None) -> list[Path]:
    """Put every locked .deb into `dest` (from `cache`, downloaded when missing from the
    `mirrors`), each checked against its SHA-256."""
    cache.mkdir(parents=True, exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    roots: list[str] | None = None
    out = []
    for deb in debs:
        cached = cache / deb.file_name
        if not (cached.is_file() and sha256_file(cached) == deb.sha256):
            roots = mirrors(base_image=base_image) if roots is None else roots
            _download(deb, roots, cached)
        link = dest / deb.file_name
        try:
            os.link(cached, link)
        except OSError:
            shutil.copyfile(cached, link)
        out.append(link)
    return out


def _minimal_status(status: str) -> str:
    """The entries of a dpkg status file that a minimal Debian has: Essential or Priority:
    required packages, apt, and their (Pre-)Depends among the installed ones."""
    entries = {}
    for para in status.strip().split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", para, re.M))
        entries[fields["Package"]] = (fields, para)
    todo = [
        name
        for name, (f, _) in entries.items()
        if f.get("Priority") == "required" or f.get("Essential") == "yes" or name == "apt"
    ]
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        fields = entries[name][0]
        for alt in ",".join(fields.get(k, "") for k in ("Pre-Depends", "Depends")).split(","):
            names = [a.split()[0].split(":")[0] for a in alt.split("|") if a.strip()]
            todo += [n for n in names if n in entries][:1]
    return "\n\n".join(entries[n][1] for n in sorted(keep)) + "\n"


def resolve(packages: list[str], base_image: str) -> list[Deb]:
    """What apt would install for `packages` (no Recommends) on a minimal `base_image`, with
    the Filename and SHA256 the host's apt lists record (run on a Debian host of that release)."""
    status = subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "cat",
         base_image, "/var/lib/dpkg/status"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="airnub-debs-") as tmp:
        (Path(tmp) / "status").write_text(_minimal_status(status))
        (Path(tmp) / "archives" / "partial").mkdir(parents=True)
        opts = [
            "-o",
            f"Dir::State::status={tmp}/status",
            "-o",
            f"Dir::Cache::archives={tmp}/archives",
        ]
        sim = subprocess.run(
            ["apt-get", *opts, "--simulate", "--no-install-recommends", "-qq", "install", *packages],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    debs = []
    for name, version, arch in re.findall(
        r"^Inst (\S+) (?:\[\S+\] )?\((\S+) .*?\[(\S+)\]\)", sim, re.M
    ):
        show = subprocess.run(
            ["apt-cache", "show", f"{name}={version}"], check=True, capture_output=True, text=True
        ).stdout.split("\n\n")[0]
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", show, re.M))
        debs.append(Deb(name, version, arch, fields["SHA256"], fields["Filename"]))
    return sorted(debs, key=lambda d: d.name)


def write_lock(debs: list[Deb], packages: list[str], path: Path = LOCK) -> None:
    header = (
        f"# Debian packages of the worker image: {' '.join(packages)} and the dependencies a\n"
        "# minimal Debian lacks. Written by `python -m deploy_tools.image.debs lock` (see\n"
        "# deploy_tools/image/debs.py); the build checks each file's SHA-256.\n"
        f"# requested: {' '.join(packages)}\n"
        "# name version arch sha256 pool-path\n"
    )
    path.write_text(header + "".join(d.line() + "\n" for d in debs))


def requested(path: Path = LOCK) -> list[str]:
    """The packages the lock was made for (its `# requested:` line)."""
    m = re.search(r"^# requested: (.+)$", path.read_text(), re.M)
    return m.group(1).split() if m else []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy_tools.image.debs")
    sub = parser.add_subparsers(dest="command", required=True)
    lock = sub.add_parser("lock", help="re-resolve debs.lock on this Debian host")
    lock.add_argument("--base-image", default=os.environ.get("AIRNUB_BASE_IMAGE"), required=False)
    lock.add_argument("packages", nargs="*", help="default: the lock's `# requested:` line")
    args = parser.parse_args(argv)
    if not args.base_image:
        parser.error("--base-image (or AIRNUB_BASE_IMAGE) is required")
    packages = args.packages or requested()
    debs = resolve(packages, args.base_image)
    write_lock(debs, packages)
    print(f"{LOCK}: {len(debs)} package(s)")


if __name__ == "__main__":
    main()
