"""Bit-identical proof: two clean builds in different folders, no cache, one digest.

Each build starts from a fresh `git clone` of <ref> in its own temporary folder (so nothing
of the working tree — caches, .venv, untracked files — can leak in), assembles its own context
and builds with ``--no-cache``. On a mismatch both images are saved and compared layer by layer.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from deploy_tools.image import layerdiff
from deploy_tools.image.build import (
    DEFAULT_SOURCE,
    BuildOptions,
    BuildResult,
    build_image,
    source_date_epoch,
)


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`."""

    results: list[BuildResult]
    config_diff: list[str] = field(default_factory=list)
    layer_diffs: list[layerdiff.LayerDiff] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Whether every build gave the same manifest digest."""
        return len({r.digest for r in self.results}) == 1

    def describe(self) -> str:
        """One line per build, then the differences if any."""
        lines = [
            f"build {i + 1}: {r.digest} ({r.seconds:.0f} s)" for i, r in enumerate(self.results)
        ]
        if self.identical:
            lines.append(f"identical: one digest {self.results[0].digest}")
            return "\n".join(lines)
        lines.append("MISMATCH")
        lines += [f"config: {line}" for line in self.config_diff]
        lines += [d.describe() for d in self.layer_diffs]
        return "\n".join(lines)


def resolve(project: Path, ref: str) -> str:
    """The commit id ``ref`` names now (resolved once: others may commit during a verify)."""
    return subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=project, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def clean_copy(project: Path, commit: str, dest: Path) -> None:
    """Check out ``commit`` of ``project`` into ``dest`` (a local clone: tracked files only).

    The clone keeps git metadata so the copy knows its commit time and revision exactly as the
    original does.
    """
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", "--no-hardlinks", str(project), str(dest)],
        check=True,
    )
    subprocess.run(["git", "checkout", "--quiet", commit], cwd=dest, check=True)


def _save(tag: str, dest: Path) -> None:
    subprocess.run(["docker", "save", "-o", str(dest), tag], check=True)


def verify(
    project: Path,
    *,
    base_image: str | None = None,
    ref: str = "HEAD",
    tag: str = "airnub-worker:verify",
    wheel_cache: Path | None = None,
    quiet: bool = True,
    source: str = DEFAULT_SOURCE,
) -> VerifyReport:
    """Build ``ref`` twice from clean copies without cache and compare the digests."""
    project = project.resolve()
    cache = wheel_cache or project / ".image" / "wheelhouse"
    commit = resolve(project, ref)
    results = []
    with tempfile.TemporaryDirectory(prefix="airnub-verify-") as tmp:
        tags = [f"{tag}-a", f"{tag}-b"]
        for i, build_tag in enumerate(tags):
            copy = Path(tmp) / f"copy-{i}" / "src"  # different depth and name per build
            copy.parent.mkdir()
            clean_copy(project, commit, copy)
            opts = BuildOptions(
                project=copy, tag=build_tag, base_image=base_image, no_cache=True,
                wheel_cache=cache, epoch=source_date_epoch(copy), quiet=quiet, source=source,
            )  # fmt: skip
            results.append(build_image(opts))
        report = VerifyReport(results)
        if not report.identical:
            archives = [Path(tmp) / f"{i}.tar" for i in range(2)]
            for build_tag, archive in zip(tags, archives, strict=True):
                _save(build_tag, archive)
            report.config_diff, report.layer_diffs = layerdiff.diff_archives(*archives)
    return report
