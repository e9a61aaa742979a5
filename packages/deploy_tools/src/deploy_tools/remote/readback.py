"""What a `deploy remote` left on the server when `prefect deploy` failed partway.

Before `prefect deploy` runs, `read_deployments` records each intended deployment as the server
has it (id, `updated` timestamp, image). When it fails, `report_partial` waits (bounded) for the
server to answer again, reads the same deployments back and says of each whether it is new,
updated, unchanged or missing, so the user knows what runs there until the next `deploy
remote` (which converges: `prefect deploy` upserts by flow and deployment name).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from deploy_tools.reporting import Reporter

Key = tuple[str, str]  # (entrypoint, deployment name): how a prefect.yaml names a deployment

# How long a failed deploy waits for the server to answer again before saying what it holds is
# unknown: a restart of a Prefect server takes 4-10 s here.
READBACK_WAIT = 45.0


@dataclass(frozen=True)
class Seen:
    """One deployment as the server has it."""

    id: str
    updated: str
    image: str | None


def shown(key: Key) -> str:
    """`flows_alpha.ingest:ingest (docker)`: a deployment as the files name it."""
    return f"{key[0]} ({key[1]})"


def read_deployments(api_url: str, keys: Sequence[Key]) -> dict[Key, Seen]:
    """The deployments of `keys` that exist on the server at `api_url` (by name, then entrypoint).

    Raises:
        Exception: the Prefect client's (a lost connection is retried once).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from deploy_tools.prefect_api import GONE_RETRIES, use_api

    wanted = set(keys)

    async def read() -> dict[Key, Seen]:
        names = sorted({name for _, name in wanted})
        async with get_client() as client:
            deps = await client.read_deployments(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
            )
        return {
            (d.entrypoint or "", d.name): Seen(
                str(d.id), d.updated.isoformat() if d.updated else "",
                (d.job_variables or {}).get("image"),
            )
            for d in deps
            if (d.entrypoint or "", d.name) in wanted
        }  # fmt: skip

    with use_api(api_url, retries=GONE_RETRIES):
        return asyncio.run(read())


def classify(
    keys: Sequence[Key], before: dict[Key, Seen], after: dict[Key, Seen]
) -> list[tuple[Key, str]]:
    """Each of `keys` as "new", "updated", "unchanged" or "missing" (not on the server after).

    A deployment whose id changed (deleted and made again) is "new"; one whose `updated`
    timestamp or image changed is "updated".

    Example:
        >>> a, b = ("m:f", "docker"), ("m:g", "docker")
        >>> classify([a, b], {}, {a: Seen("1", "t1", "img")})
        [(('m:f', 'docker'), 'new'), (('m:g', 'docker'), 'missing')]
    """
    out = []
    for key in keys:
        old, new = before.get(key), after.get(key)
        if new is None:
            out.append((key, "missing"))
        elif old is None or old.id != new.id:
            out.append((key, "new"))
        elif (old.updated, old.image) != (new.updated, new.image):
            out.append((key, "updated"))
        else:
            out.append((key, "unchanged"))
    return out


def wait_until_answering(api_url: str, timeout: float) -> bool:
    """True as soon as the server answers `/health`; False after `timeout` s."""
    from deploy_tools.prefect_api import server_answers

    deadline = time.monotonic() + timeout
    while True:
        if server_answers(api_url, timeout=2.0):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)


def report_partial(
    reporter: Reporter,
    api_url: str,
    keys: Sequence[Key],
    before: dict[Key, Seen],
    image_ref: str,
    *,
    wait: float = READBACK_WAIT,
) -> str:
    """Read the server back after a failed `prefect deploy` and report each intended deployment.

    Returns the one line a `DeployError` ends with (what is missing, what to do).
    """
    from deploy_tools.prefect_api import connection_failure, describe

    after: dict[Key, Seen] | None = None
    why = f"it did not answer within {wait:.0f} s"
    if wait_until_answering(api_url, wait):
        try:
            after = read_deployments(api_url, keys)
        except Exception as exc:  # the server went away again, or refused: unknown
            lost = connection_failure(exc)
            why = f"reading it back failed ({describe(lost or exc)})"
    if after is None:
        reporter.failure(f"what the Prefect server at {api_url} holds now is unknown: {why}.")
        reporter.failure(
            f"before this deploy it had {len(before)} of the {len(keys)} deployment(s):"
        )
        for key in keys:
            seen = before.get(key)
            reporter.failure(f"  {shown(key)}: " + (f"image {seen.image}" if seen else "absent"))
        return (
            "run `deploy remote` again once the server answers: deployments of the same name "
            "are updated in place, so it converges"
        )
    states = classify(keys, before, after)
    reporter.failure(f"the Prefect server at {api_url} now has, of the {len(keys)} deployment(s):")
    for key, state in states:
        seen = after.get(key)
        note = ""
        if seen is not None and seen.image != image_ref:
            note = f" (still image {seen.image}, not {image_ref})"
        reporter.failure(f"  {state:<9} {shown(key)}{note}")
    counts = {
        s: sum(1 for _, x in states if x == s) for s in ("new", "updated", "unchanged", "missing")
    }
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return (
        f"the remote is partly deployed ({summary}): run `deploy remote` again; deployments of "
        "the same name are updated in place, so it converges"
    )
