"""A hash-checked wheelhouse for the image's interpreter, fetched on the host.

Containers may not reach PyPI, and a `--network none` build is hermetic, so every wheel goes
into the build context. The lock is exported by uv with hashes; its environment markers are
evaluated against the *image's* interpreter (probed with `docker run --network none`), not the
host's: Debian's 3.11.2 needs `async-timeout`, a 3.11.7 host does not. Wheels are kept in a
cache keyed by the target, and reused when name, version and sha256 match the lock.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name, parse_wheel_filename

# Prints the PEP 508 marker environment, glibc version and machine of the running interpreter
# (the same keys as packaging.markers.default_environment; stdlib only, runs in the base image).
_PROBE = r"""
import json, os, platform, sys
impl = sys.implementation
iv = "{0.major}.{0.minor}.{0.micro}".format(impl.version)
if impl.version.releaselevel != "final":
    iv += impl.version.releaselevel[0] + str(impl.version.serial)
libc = platform.libc_ver()
print(json.dumps({"markers": {
    "implementation_name": impl.name, "implementation_version": iv, "os_name": os.name,
    "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform},
    "glibc": libc[1] if libc[0] == "glibc" else "", "executable": sys.executable}))
"""


@dataclass(frozen=True)
class Target:
    """The interpreter wheels are fetched for."""

    markers: dict[str, str]
    glibc: str

    @property
    def key(self) -> str:
        """Cache folder name, e.g. ``cp3.11.2-x86_64-glibc2.36``."""
        m = self.markers
        return f"cp{m['python_full_version']}-{m['platform_machine']}-glibc{self.glibc}"

    def pip_args(self) -> list[str]:
        """`pip download` options that select wheels for this interpreter and platform."""
        major, minor = self.markers["python_version"].split(".")
        machine = self.markers["platform_machine"]
        g_major, g_minor = (int(x) for x in self.glibc.split(".")[:2])
        platforms = [f"manylinux_{g_major}_{n}_{machine}" for n in range(g_minor, 4, -1)]
        platforms += [
            f"manylinux2014_{machine}",
            f"manylinux2010_{machine}",
            f"manylinux1_{machine}",
        ]
        args = ["--only-binary", ":all:", "--implementation", "cp", "--python-version",
                f"{major}.{minor}", "--abi", f"cp{major}{minor}"]  # fmt: skip
        for platform in platforms:
            args += ["--platform", platform]
        return args


@dataclass(frozen=True)
class Requirement:
    """One pinned, hash-checked line of the exported lock."""

    name: str
    version: str
    hashes: tuple[str, ...]
    marker: str | None

    def line(self) -> str:
        """A requirements.txt line without marker (already evaluated)."""
        return f"{self.name}=={self.version} " + " ".join(f"--hash=sha256:{h}" for h in self.hashes)


def probe_target(image: str) -> Target:
    """Run the base image's ``python3`` offline and return its marker environment."""
    out = subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "python3",
         image, "-c", _PROBE],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return _target(out)


def _target(probe_output: str) -> Target:
    data = json.loads(probe_output)
    return Target(markers=data["markers"], glibc=data["glibc"])


def export_lock(project: Path) -> str:
    """`uv export` of the runtime set, with hashes: the third-party dependencies of every
    workspace member (``--all-packages``: also of a member the root does not depend on) and of
    the root's extras; no dev group, no workspace member itself (those are built as wheels)."""
    return subprocess.run(
        ["uv", "export", "--frozen", "--all-packages", "--no-dev", "--no-emit-workspace",
         "--hashes", "--no-header", "--no-annotate"],
        cwd=project, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def parse_requirements(text: str) -> list[Requirement]:
    """Parse uv's exported requirements (``name==v ; marker \\ --hash=sha256:…``)."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        buf += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            logical.append(buf.strip())
            buf = ""
    if buf.strip():
        logical.append(buf.strip())
    reqs = []
    for entry in logical:
        parts = entry.split(" --hash=")
        spec, hashes = parts[0], tuple(h.removeprefix("sha256:") for h in parts[1:])
        spec, _, marker = spec.partition(";")
        name, _, version = spec.strip().partition("==")
        if not version or not hashes:
            raise ValueError(f"not a pinned, hashed requirement: {entry!r}")
        reqs.append(Requirement(name.strip(), version.strip(), hashes, marker.strip() or None))
    return reqs


def select(reqs: list[Requirement], target: Target) -> list[Requirement]:
    """The requirements whose markers hold for the target interpreter."""
    return [r for r in reqs if r.marker is None or Marker(r.marker).evaluate(dict(target.markers))]


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file at `path`, hex."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cached(cache: Path, reqs: list[Requirement]) -> dict[str, Path]:
    """Map requirement names to cached wheels whose name, version and sha256 match the lock."""
    by_key: dict[tuple[str, str], list[Path]] = {}
    for path in cache.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        by_key.setdefault((name, str(version)), []).append(path)
    found = {}
    for req in reqs:
        for path in by_key.get((canonicalize_name(req.name), req.version), []):
            if sha256_file(path) in req.hashes:
                found[req.name] = path
                break
    return found


def _pip() -> list[str]:
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    return ["uv", "tool", "run", "--from", "pip", "pip"]


def fetch(reqs: list[Requirement], target: Target, cache_root: Path, dest: Path) -> list[Path]:
    """Put one wheel per requirement into ``dest`` (hard links from the cache when possible).

    Missing wheels are downloaded with ``pip download --require-hashes --no-deps``; every wheel
    is hash-checked against the lock before it is used.
    """
    cache = cache_root / target.key
    cache.mkdir(parents=True, exist_ok=True)
    have = _cached(cache, reqs)
    missing = [r for r in reqs if r.name not in have]
    if missing:
        with tempfile.TemporaryDirectory(prefix="airnub-wheels-") as tmp:
            req_file = Path(tmp) / "requirements.txt"
            req_file.write_text("".join(r.line() + "\n" for r in missing))
            env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            proc = subprocess.run(
                [*_pip(), "download", "--quiet", "--no-deps", "--require-hashes",
                 *target.pip_args(), "-d", str(cache), "-r", str(req_file)],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"pip download failed:\n{proc.stdout}{proc.stderr}")
    dest.mkdir(parents=True, exist_ok=True)
    found = _cached(cache, reqs)
    out = []
    for req in reqs:
        path = found.get(req.name)
        if path is None:
            raise RuntimeError(f"no wheel matching the lock for {req.name}=={req.version}")
        link = dest / path.name
        if not link.exists():
            try:
                os.link(path, link)
            except OSError:
                shutil.copy2(path, link)
        out.append(link)
    return out


def build_workspace_wheels(project: Path, dest: Path, epoch: int) -> list[Path]:
    """Build every workspace member as a reproducible wheel (``uv build --all-packages``:
    the members the root pyproject's ``[tool.uv.workspace]`` globs find; a virtual member,
    ``tool.uv.package = false``, has no wheel), with SOURCE_DATE_EPOCH."""
    dest.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    subprocess.run(
        ["uv", "build", "--all-packages", "--wheel", "--quiet", "--out-dir", str(dest)],
        cwd=project, check=True, env=env,
    )  # fmt: skip
    return sorted(dest.glob("*.whl"))
