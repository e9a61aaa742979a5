"""git in the worker image (Debian's, from deploy_tools/image/debs.lock): Prefect's git_clone
pull step runs it in the flow-run container, as uid 10001, with no network at build time."""

from __future__ import annotations

import pytest

from tests.image.conftest import RunInImage

pytestmark = [pytest.mark.docker]

CLONE = (
    "set -e; cd /tmp; git init -q -b main src; cd src; echo hi > a.txt; git add a.txt;"
    " git -c user.email=t@t -c user.name=t commit -q -m one; cd ..;"
    " git clone -q --depth 1 file:///tmp/src out; cat out/a.txt; id -u"
)


def test_git_clones_as_the_worker_user(run_in_image: RunInImage) -> None:
    version = run_in_image("git", "--version")
    assert version.returncode == 0 and version.stdout.startswith("git version 2."), version
    done = run_in_image("sh", "-c", CLONE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hi", "10001"]
    # git clone over https:// is git-remote-https, linked against libcurl (no missing library)
    helper = run_in_image(
        "sh", "-c", "ldd /usr/lib/git-core/git-remote-https | grep -c 'not found' || true"
    )
    assert helper.stdout.strip() == "0", helper


def test_dpkg_is_consistent_and_left_no_logs(run_in_image: RunInImage) -> None:
    audit = run_in_image(
        "sh", "-c", "dpkg --audit && dpkg-query -W -f '${Version}' git && ls -A /var/log"
    )
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout.startswith("1:2."), audit.stdout  # the locked git, and /var/log is empty
    assert "dpkg.log" not in audit.stdout and "alternatives.log" not in audit.stdout
