"""`image:verify`: two clean builds, no cache, different folders ⇒ one digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_tools.image.verify import verify

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]


def test_two_clean_builds_give_one_digest(
    base_image: str, repo_root: Path, cleanup_images: list[str]
) -> None:
    report = verify(repo_root, base_image=base_image, tag="airnub-worker:pytest-verify")
    cleanup_images += [f"airnub-worker:pytest-verify-{s}" for s in "ab"]
    assert len(report.results) == 2
    assert report.identical, report.describe()
    assert report.results[0].context != report.results[1].context
    assert len({r.revision for r in report.results}) == 1
