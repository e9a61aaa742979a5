"""`airnub deploy remote --prune` against the stand-in remote: a renamed deployment leaves
exactly one, a deployment made by hand stays, `--dry-run` deletes nothing, and a prune of
most of what airnub manages is refused without `--yes` before anything is built.

The test deploys its own file beside alpha's prefect.yaml (the same three deployments and one
more), git-ignored in the copy: deploy/ is one of the image's inputs, so an untracked file
would rebuild it, and the worker image the other remote tests built is reused.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.remote.conftest import Copy, Remote

pytestmark = [pytest.mark.docker, pytest.mark.stack]

FILE = "prefect.prune.yaml"
EXTRA = """
  - name: {name}
    entrypoint: flows_alpha.ingest:ingest
    description: Pruned by test_remote_prune.
    tags: [alpha, remote]
    schedules: []
    work_pool: *pool
"""


def ingest_deployments(remote: Remote) -> dict[str, Any]:
    """The deployments of flow alpha_ingest, by name."""
    body = {"flows": {"name": {"any_": ["alpha_ingest"]}}}
    return {d["name"]: d for d in remote.api("POST", "/deployments/filter", body)}


def every_deployment(remote: Remote) -> list[tuple[str, str]]:
    """(id, updated) of every deployment (the one made by hand has no entrypoint)."""
    return sorted((d["id"], d["updated"]) for d in remote.api("POST", "/deployments/filter", {}))


def test_a_renamed_deployment_leaves_exactly_one_and_one_made_by_hand_stays(
    checkout: Copy, remote: Remote
) -> None:
    alpha = checkout.root / "deploy" / "projects" / "alpha"
    base = (alpha / "prefect.yaml").read_text()
    file = alpha / FILE
    exclude = checkout.root / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + f"\n/deploy/projects/alpha/{FILE}\n")
    flow = remote.api("POST", "/flows/", {"name": "alpha_ingest"})
    by_hand = remote.api("POST", "/deployments/", {"name": "by-hand", "flow_id": flow["id"]})
    deploy = ("deploy", "remote", "--prefect-file", FILE)
    news: tuple[str, ...] = ()
    try:
        file.write_text(base + EXTRA.format(name="prune-old"))
        done = checkout.airnub(*deploy)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        old = ingest_deployments(remote)["prune-old"]
        assert "airnub:airnub-prefect-starter:remote" in old["tags"]

        news = ("prune-new", "prune-new-b", "prune-new-c")
        file.write_text(base + "".join(EXTRA.format(name=n) for n in news))
        dry = checkout.airnub(*deploy, "--prune", "--dry-run")
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-4000:]
        assert (
            "would delete deployment alpha_ingest/prune-old (its scheduled runs go with it)"
            in dry.stdout
        )
        assert "prune-old" in ingest_deployments(remote)  # the dry run deleted nothing

        done = checkout.airnub(*deploy, "--prune")
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        assert "image: up to date" in done.stdout  # the git-ignored file rebuilt nothing
        assert "deployment alpha_ingest/prune-old: deleted (its scheduled runs too)" in out
        names = set(ingest_deployments(remote))
        assert {"prune-new", "docker", "by-hand"} <= names and "prune-old" not in names
        assert remote.api("GET", f"/deployments/{by_hand['id']}")["name"] == "by-hand"

        # Every deployment renamed in both files: 6 would go, more than the 5 a prune may
        # delete without --yes whatever else the session's other tests made (the refusal comes
        # before the build: prefect.yaml may differ from HEAD).
        before = every_deployment(remote)
        moved = base.replace("  - name: docker\n", "  - name: moved\n")
        (alpha / "prefect.yaml").write_text(moved)
        file.write_text(moved + EXTRA.format(name="prune-moved"))
        refused = checkout.airnub(*deploy, "--prune")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "prune refused: it would delete 6 object(s), more than 5" in refused.stderr
        assert "deployment alpha_ingest/docker (its scheduled runs go with it)" in refused.stderr
        assert "building" not in refused.stdout
        assert every_deployment(remote) == before  # nothing deployed, nothing deleted
    finally:
        (alpha / "prefect.yaml").write_text(base)
        file.unlink(missing_ok=True)
        for name, d in ingest_deployments(remote).items():
            if name in ("prune-old", "by-hand", *news):
                remote.api("DELETE", f"/deployments/{d['id']}")
