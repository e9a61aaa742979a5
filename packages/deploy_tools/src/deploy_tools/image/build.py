"""Deterministic worker image build: assemble a context, then one `docker buildx build`.

The context holds only what the image needs: `Dockerfile.worker`, the hash-locked
`requirements.txt`, a wheelhouse for the image's interpreter, every workspace member as a
reproducible wheel, `uv.lock` (mounted, for the SBOM the build writes of what it installed),
the entrypoint and the `deploy/` YAML files; with `with_git`, also the hash-checked .deb files
of `debs.lock` (git, for Prefect's git_clone pull step), installed by the Dockerfile's `os-git`
stage (a default build has neither the files nor the layer, and needs no Debian mirror). Every
file in it gets the mtime SOURCE_DATE_EPOCH (the last commit time), so two clean builds give
one digest. The image's `/app/sbom.cdx.json`
is also kept beside the build (`.image/sbom.cdx.json`), read from the built archive.

A base image missing from the local store is pulled when it is pinned by digest, else (or when
the pull fails) the build is refused with the offline alternative.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy_tools.image import debs, layerdiff, sbom, wheelhouse
from deploy_tools.settings import WORKER_IMAGE, workspace_members

DOCKERFILE = "Dockerfile.worker"
ENTRYPOINT = Path(__file__).with_name("entrypoint.sh")
# The source label is [tool.airnub] image_source (settings.image_source); no value without it.
DEFAULT_SOURCE = ""
SBOM_IN_IMAGE = "app/" + sbom.SBOM_NAME  # written by the build (Dockerfile.worker)
# Label of an image built with Debian packages (Dockerfile.worker's os-git stage): its value.
OS_PACKAGES_LABEL = "io.airnub.os-packages"
GIT_PACKAGES = "git"
# What to do when the base image is neither in the local store nor pullable.
OFFLINE_HINT = (
    "offline, make a Debian base with ci/provision-docker.sh (ci/offline_images.py) and "
    "build on it: --base-image airnub/base:bookworm, or export AIRNUB_BASE_IMAGE=airnub/base:bookworm"
)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class BuildOptions:
    """What to build, from where, and how."""

    project: Path
    tag: str = WORKER_IMAGE
    base_image: str | None = None  # None: the pinned default in Dockerfile.worker
    no_cache: bool = False
    wheel_cache: Path | None = None  # None: <project>/.image/wheelhouse
    with_git: bool = False  # git in the image (debs.lock's .deb files, Dockerfile's os-git)
    deb_cache: Path | None = None  # None: <project>/.image/debs
    context_dir: Path | None = None  # None: <project>/.image/context
    epoch: int | None = None  # None: last commit time
    build_args: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    source: str = DEFAULT_SOURCE  # the org.opencontainers.image.source label
    sbom_path: Path | None = None  # None: <project>/.image/sbom.cdx.json
    log: Callable[[str], None] = _stderr  # progress messages ("pulling <base>")


@dataclass(frozen=True)
class BuildResult:
    """A built, loaded image."""

    tag: str
    digest: str
    seconds: float
    context: Path
    revision: str = "unknown"
    sbom: Path | None = None  # the SBOM written beside the build (None: image reused)

    @property
    def ref(self) -> str:
        """``name@sha256:…`` — the image as built (the tag may move, the digest does not)."""
        return f"{self.tag.rsplit(':', 1)[0] if ':' in self.tag.split('/')[-1] else self.tag}@{self.digest}"


def git_output(project: Path, *args: str) -> str | None:
    """`git <args>`'s stripped output in `project`; None if it fails or prints nothing."""
    try:
        proc = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True)
    except FileNotFoundError:  # no git (inside the image)
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def source_date_epoch(project: Path) -> int:
    """The last commit time of ``project`` (or $SOURCE_DATE_EPOCH outside a git checkout)."""
    value = git_output(project, "log", "-1", "--format=%ct") or os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        raise RuntimeError("not a git checkout and SOURCE_DATE_EPOCH is unset")
    return int(value)


def lock_epoch(project: Path, default: int, lock: str | Path = "uv.lock") -> int:
    """The commit time of ``lock`` (default ``uv.lock``): a dependency layer's timestamp
    (stable across commits)."""
    value = git_output(project, "log", "-1", "--format=%ct", "--", str(lock))
    return int(value) if value else default


def project_version(project: Path) -> str:
    """The version in the root ``pyproject.toml``."""
    data = tomllib.loads((project / "pyproject.toml").read_text())
    return str(data.get("project", {}).get("version", "0.0.0"))


def default_base_image(dockerfile: Path) -> str:
    """The ``ARG BASE_IMAGE=…`` default written in the Dockerfile."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{dockerfile} has no `ARG BASE_IMAGE=` default")
    return match.group(1)


def image_present(image: str) -> bool:
    """Whether ``image`` is in the local image store (never pulls)."""
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )


def ensure_base_image(
    image: str, *, log: Callable[[str], None] = _stderr, timeout: float | None = None
) -> bool:
    """Make sure ``image`` is in the local store: True if it was pulled, False if it was there.

    A missing image is pulled only when pinned by digest (``name@sha256:…``: the pull cannot
    give another image than the one the build was proved with); otherwise, or when
    ``docker pull`` fails (no registry answers), RuntimeError names the offline alternative.
    """
    if image_present(image):
        return False
    if "@sha256:" not in image:
        raise RuntimeError(
            f"base image {image} is not in the local image store and is not pinned by digest, "
            f"so it is not pulled; `docker pull` it yourself, or {OFFLINE_HINT}"
        )
    log(f"pulling {image}")
    try:
        proc = subprocess.run(
            ["docker", "pull", image], capture_output=True, text=True, timeout=timeout
        )
        failure = proc.stderr.strip().splitlines()[-1:] if proc.returncode != 0 else []
    except subprocess.TimeoutExpired:
        failure = [f"no answer in {timeout} s"]
    if failure or not image_present(image):
        why = failure[0] if failure else "pulled, yet not in the local store"
        raise RuntimeError(
            f"base image {image} is not in the local image store and `docker pull` failed "
            f"({why}); {OFFLINE_HINT}"
        )
    log(f"pulled {image}")
    return True


def image_label(image: str, label: str) -> str | None:
    """Label `label` of the local image `image`; None when the image (or label) is absent."""
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout or "null") or {}
    value = labels.get(label)
    return str(value) if value else None


def _normalise(root: Path, epoch: int) -> None:
    """Fixed mtimes and modes for everything COPY'd from the context."""
    for path in sorted(root.rglob("*"), reverse=True):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def assemble_context(
    project: Path,
    ctx: Path,
    target: wheelhouse.Target,
    wheel_cache: Path,
    epoch: int,
    *,
    with_git: bool = False,
    deb_cache: Path | None = None,
    base_image: str | None = None,  # its apt sources: a mirror for the .deb files
) -> None:
    """Write the build context for ``project`` into an empty folder ``ctx`` (with the .deb
    files of git only when ``with_git``)."""
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project / DOCKERFILE, ctx / "Dockerfile")
    # Bind-mounted where the SBOM is written: the hashes of the locked files installed.
    shutil.copyfile(project / "uv.lock", ctx / "uv.lock")
    reqs = wheelhouse.select(wheelhouse.parse_requirements(wheelhouse.export_lock(project)), target)
    (ctx / "requirements.txt").write_text("".join(r.line() + "\n" for r in reqs))
    wheelhouse.fetch(reqs, target, wheel_cache, ctx / "wheels" / "deps")
    wheelhouse.build_workspace_wheels(project, ctx / "wheels" / "workspace", epoch)
    shutil.copyfile(ENTRYPOINT, ctx / "entrypoint.sh")
    if with_git:  # hash-checked .deb files, installed offline by install-debs.sh (os-git)
        cache = deb_cache or project / ".image" / "debs"
        debs.fetch(debs.read_lock(), cache, ctx / "debs", base_image)
        shutil.copyfile(debs.INSTALLER, ctx / "install-debs.sh")
    # The [tool.airnub] table and each member's pyproject.toml (only that file: a project's own
    # [tool.airnub.project] table) tell `airnub` in the image which projects and files exist.
    shutil.copyfile(project / "pyproject.toml", ctx / "pyproject.toml")
    for member in workspace_members(project):
        out = ctx / member.relative_to(project) / "pyproject.toml"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(member / "pyproject.toml", out)
    deploy = ctx / "deploy"
    deploy.mkdir()
    src = project / "deploy"
    if src.is_dir():
        for path in sorted(src.rglob("*")):
            if path.is_file() and path.suffix in {".yaml", ".yml"}:
                out = deploy / path.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out)
    # Wheels are only bind-mounted (not COPY'd), but normalise the whole tree: it is cheap.
    _normalise(ctx, epoch)


def buildx(
    ctx: Path,
    tag: str,
    build_args: dict[str, str],
    *,
    no_cache: bool = False,
    quiet: bool = False,
    sbom_out: Path | None = None,
) -> str:
    """Run the deterministic `docker buildx build` and return the image's manifest digest.

    ``sbom_out``: where to copy the image's ``/app/sbom.cdx.json`` (read from the archive).
    """
    with tempfile.TemporaryDirectory(prefix="airnub-buildx-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        archive = Path(tmp) / "image.oci.tar"
        # OCI archive then `docker load`: dockerd's own image exporter refuses rewrite-timestamp.
        # gzip level 1, forced on every layer: the rewrite re-compresses the layers on each
        # export, level 1 halves that time; forcing it means no blob cached with other settings
        # (e.g. by an earlier plain `docker build` on the same base) can change the digest.
        output = (
            f"type=oci,dest={archive},name={tag},rewrite-timestamp=true,"
            "compression=gzip,compression-level=1,force-compression=true"
        )
        cmd = ["docker", "buildx", "build", "--file", str(ctx / "Dockerfile"), "--network", "none",
               "--provenance=false", "--sbom=false", "--progress", "plain", "--output", output,
               "--metadata-file", str(metadata)]  # fmt: skip
        if no_cache:
            cmd.append("--no-cache")
        for key, value in sorted(build_args.items()):
            cmd += ["--build-arg", f"{key}={value}"]
        env = {**os.environ, "BUILDX_NO_DEFAULT_ATTESTATIONS": "1"}
        proc = subprocess.run([*cmd, str(ctx)], env=env, capture_output=quiet, text=True)
        if proc.returncode != 0:
            detail = f"\n{proc.stdout}{proc.stderr}" if quiet else ""
            raise RuntimeError(f"docker buildx build failed ({proc.returncode}){detail}")
        digest = str(json.loads(metadata.read_text())["containerimage.digest"])
        if sbom_out is not None:
            sbom_out.parent.mkdir(parents=True, exist_ok=True)
            sbom_out.write_bytes(archive_file(archive, SBOM_IN_IMAGE))
        load = subprocess.run(
            ["docker", "load", "-i", str(archive)], capture_output=True, text=True
        )
        if load.returncode != 0:
            raise RuntimeError(f"docker load failed: {load.stderr}")
        return digest


def archive_file(archive: Path, path: str) -> bytes:
    """The content of ``path`` (relative to /) in an OCI image archive: from the topmost layer
    that holds it as a regular file."""
    image = layerdiff.read_image(archive)
    with tarfile.open(archive) as outer:
        for digest in reversed(image.layers):
            with tarfile.open(fileobj=layerdiff.blob(outer, digest), mode="r:*") as layer:
                for member in layer:
                    if member.name.removeprefix("./") == path and member.isfile():
                        fh = layer.extractfile(member)
                        return fh.read() if fh else b""
    raise RuntimeError(f"the built image has no /{path}")


# Files whose change means a built image is out of date (`git status` of these paths).
IMAGE_INPUTS = ("packages", "deploy", "pyproject.toml", "uv.lock", "Dockerfile.worker")


def outdated_because(project: Path, tag: str, *, with_git: bool = False) -> str | None:
    """Why the local image `tag` does not hold `project` as it is now; None when it does.

    Current means: its revision label is HEAD, `git status` shows no change under
    `IMAGE_INPUTS`, and it is the variant asked for (git in it or not: its
    `io.airnub.os-packages` label). Outside a git checkout an existing image counts as current.
    """
    revision = image_label(tag, "org.opencontainers.image.revision")
    if revision is None:
        return "not built yet"
    has_git = image_label(tag, OS_PACKAGES_LABEL) == GIT_PACKAGES
    if has_git != with_git:
        return "built with git, asked without" if has_git else "built without git, asked with"
    head = git_output(project, "rev-parse", "HEAD")
    if git_output(project, "status", "--porcelain", "--", *IMAGE_INPUTS):
        return "uncommitted changes"
    if head is not None and revision != head:
        return f"built from {revision[:12]}, HEAD is {head[:12]}"
    return None


def local_digest(tag: str) -> str:
    """The manifest digest of the local image `tag` (its ID, with the containerd image store)."""
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"image {tag} is not in the local image store")
    return proc.stdout.strip()


def ensure_image(opts: BuildOptions, *, force: bool = False) -> tuple[BuildResult, str | None]:
    """The image of `opts`, built only when `force` or outdated; returns it and why it was built
    (None: reused as it was)."""
    project = opts.project.resolve()
    why = "--build" if force else outdated_because(project, opts.tag, with_git=opts.with_git)
    if why is None:
        revision = image_label(opts.tag, "org.opencontainers.image.revision") or "unknown"
        return BuildResult(opts.tag, local_digest(opts.tag), 0.0, project, revision), None
    return build_image(opts), why


def build_image(opts: BuildOptions) -> BuildResult:
    """Assemble the context for ``opts.project`` and build the image deterministically."""
    start = time.monotonic()
    project = opts.project.resolve()
    base = opts.base_image or default_base_image(project / DOCKERFILE)
    ensure_base_image(base, log=opts.log)
    epoch = opts.epoch if opts.epoch is not None else source_date_epoch(project)
    target = wheelhouse.probe_target(base)
    ctx = opts.context_dir or project / ".image" / "context"
    if ctx.exists():
        shutil.rmtree(ctx)
    wheel_cache = opts.wheel_cache or project / ".image" / "wheelhouse"
    assemble_context(project, ctx, target, wheel_cache, epoch, with_git=opts.with_git,
                     deb_cache=opts.deb_cache, base_image=base)  # fmt: skip
    args = {
        "BASE_IMAGE": base,
        "SOURCE_DATE_EPOCH": str(epoch),
        "DEPS_EPOCH": str(min(epoch, lock_epoch(project, epoch))),
        "VERSION": project_version(project),
        "REVISION": git_output(project, "rev-parse", "HEAD") or "unknown",
        "SOURCE": opts.source,
        **opts.build_args,
    }
    if opts.with_git:  # Dockerfile.worker's os-git stage (the default, `os`, is the base as is)
        args["OS_STAGE"] = "os-git"
        args["DEBS_EPOCH"] = str(min(epoch, lock_epoch(project, epoch, debs.LOCK)))
    # Beside the build: the same bytes as /app/sbom.cdx.json in the image.
    sbom_path = opts.sbom_path or project / ".image" / sbom.SBOM_NAME
    digest = buildx(
        ctx, opts.tag, args, no_cache=opts.no_cache, quiet=opts.quiet, sbom_out=sbom_path
    )
    return BuildResult(opts.tag, digest, time.monotonic() - start, ctx, args["REVISION"], sbom_path)
