"""git in the worker image (Debian's, from deploy_tools/image/debs.lock) only when asked for
(`airnub image build --with-git`, Dockerfile.worker's os-git stage): Prefect's git_clone pull
step runs it in the flow-run container, as uid 10001, with no network at build time. The
default image has no git and its build fetches no .deb."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from deploy_tools.image.build import (
    OS_PACKAGES_LABEL,
    BuildOptions,
    BuildResult,
    build_image,
    image_label,
    outdated_because,
)
from tests.image.conftest import ROOT, TAG, RunInImage

pytestmark = [pytest.mark.docker]

GIT_TAG = "airnub-worker:pytest-git"
CLONE = (
    "set -e; cd /tmp; git init -q -b main src; cd src; echo hi > a.txt; git add a.txt;"
    " git -c user.email=t@t -c user.name=t commit -q -m one; cd ..;"
    " git clone -q --depth 1 file:///tmp/src out; cat out/a.txt; id -u"
)


@pytest.fixture(scope="module")
def git_image(
    base_image: str, worker_image: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuildResult]:
    ctx = tmp_path_factory.mktemp("git-image-context")
    opts = BuildOptions(
        project=ROOT, tag=GIT_TAG, base_image=base_image, with_git=True,
        context_dir=ctx / "context", wheel_cache=ROOT / ".image" / "wheelhouse", quiet=True,
        sbom_path=ctx / "sbom.cdx.json",
    )  # fmt: skip
    try:
        yield build_image(opts)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", GIT_TAG], capture_output=True)


def _run(image: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "run", "--rm", "--pull", "never", "--network", "none", image, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_the_default_image_has_no_git(worker_image: BuildResult, run_in_image: RunInImage) -> None:
    assert not (worker_image.context / "debs").exists()
    assert not (worker_image.context / "install-debs.sh").exists()
    assert run_in_image("sh", "-c", "command -v git").returncode != 0
    assert image_label(TAG, OS_PACKAGES_LABEL) is None


def test_git_clones_as_the_worker_user(git_image: BuildResult, worker_image: BuildResult) -> None:
    assert git_image.digest != worker_image.digest
    assert image_label(GIT_TAG, OS_PACKAGES_LABEL) == "git"
    version = _run(GIT_TAG, "git", "--version")
    assert version.returncode == 0 and version.stdout.startswith("git version 2."), version
    done = _run(GIT_TAG, "sh", "-c", CLONE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hi", "10001"]
    # git clone over https:// is git-remote-https, linked against libcurl (no missing library)
    helper = _run(
        GIT_TAG, "sh", "-c", "ldd /usr/lib/git-core/git-remote-https | grep -c 'not found' || true"
    )
    assert helper.stdout.strip() == "0", helper


def test_dpkg_is_consistent_and_left_no_logs(git_image: BuildResult) -> None:
    audit = _run(
        GIT_TAG, "sh", "-c", "dpkg --audit && dpkg-query -W -f '${Version}' git && ls -A /var/log"
    )
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout.startswith("1:2."), audit.stdout  # the locked git, and /var/log is empty
    assert "dpkg.log" not in audit.stdout and "alternatives.log" not in audit.stdout


def test_an_image_is_reused_only_for_its_own_variant(
    git_image: BuildResult, worker_image: BuildResult
) -> None:
    """The up-to-date check (`airnub deploy`, the prefect.yaml build step) reads the label."""
    assert outdated_because(ROOT, GIT_TAG) == "built with git, asked without"
    assert outdated_because(ROOT, TAG, with_git=True) == "built without git, asked with"
    # its own variant: only the checkout's state can make it outdated
    assert "git" not in (outdated_because(ROOT, GIT_TAG, with_git=True) or "")
    assert "git" not in (outdated_because(ROOT, TAG) or "")
