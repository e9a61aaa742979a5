"""Pruning: delete what airnub made on a server that no file under deploy/ holds any more.

What airnub made carries a marker of its scope, `airnub:<workspace>:<stack>` (`Scope.tag`;
the workspace is `workspace` of [tool.airnub], default the root `[project] name`; the stack
`local` or `remote`), so two checkouts of other workspaces on one server, and a checkout's
local and remote objects, never prune each other:

- deployments and variables: the marker is one of their tags. `setup apply` writes it with the
  object (`marked`); after `prefect deploy` of the remote files `deploy remote` adds it to
  each deployment it just deployed (`Pruner.finish`) — plain `prefect deploy` leaves it off, so
  what a person deploys by hand is never airnub's to delete;
- block documents have neither tags nor a description: the names of the blocks airnub saved
  are recorded in one Variable per scope (`Scope.inventory`, itself marked), written with
  the apply before any block is saved (a crash can only leave a recorded name without a
  block, never a block nobody recorded);
- work pools are never pruned: a worker may still poll one (`prefect work-pool delete`).

An object is prunable when it is marked for this scope and no file names it. A prune is
refused without `--yes` when it would delete more than `PRUNE_LIMIT` objects or more than
half of the objects this scope marks: that is what a wrong checkout, a branch that lost
`deploy/`, or a changed workspace name looks like, and a rename (one out, one in) is not.
The check is made before anything is applied; the deletion only after everything else was
applied (and deployed) without an error.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploy_tools.reporting import DeployError, Reporter
from deploy_tools.settings import AirnubSettings
from deploy_tools.setup.apply import Change
from deploy_tools.setup.models import VariableFile
from deploy_tools.setup.plan import SetupPlan

PRUNE_LIMIT = 5
_PAGE = 100  # objects per read (a server refuses more than its PREFECT_API_DEFAULT_LIMIT)


@dataclass(frozen=True)
class Scope:
    """Whose objects: a workspace's, on one stack (`local` or `remote`)."""

    workspace: str
    stack: str

    @property
    def tag(self) -> str:
        """The marker tag: `airnub:airnub-prefect-starter:remote`."""
        return f"airnub:{self.workspace}:{self.stack}"

    @property
    def inventory(self) -> str:
        """The Variable recording the blocks this scope saved (`airnub_blocks_<ws>_<stack>`)."""
        slug = re.sub(r"[^a-z0-9]+", "_", self.workspace.lower()).strip("_")
        return f"airnub_blocks_{slug}_{self.stack}"[:255]


def scope_of(settings: AirnubSettings, stack: str) -> Scope:
    """The scope of `settings`' checkout on `stack`."""
    workspace = settings.workspace
    if not workspace:
        doc = tomllib.loads((settings.project_dir / "pyproject.toml").read_text())
        workspace = str(doc.get("project", {}).get("name") or settings.project_dir.name)
    return Scope(workspace, stack)


def marked(plan: SetupPlan, scope: Scope, blocks: Iterable[str] = ()) -> SetupPlan:
    """`plan` with the marker on every variable and deployment, and the inventory variable
    recording `blocks` (`type/name`) applied with the other variables."""

    def tagged(tags: list[str]) -> list[str]:
        return tags if scope.tag in tags else [*tags, scope.tag]

    inventory = VariableFile(name=scope.inventory, value=sorted(blocks), tags=[scope.tag])
    return replace(
        plan,
        variables=[
            *(v.model_copy(update={"tags": tagged(v.tags)}) for v in plan.variables),
            inventory,
        ],
        deployments=[
            replace(d, spec=d.spec.model_copy(update={"tags": tagged(d.spec.tags)}))
            for d in plan.deployments
        ],
    )


@dataclass(frozen=True)
class Stale:
    """A marked object that no file holds: `kind` deployment, variable or block."""

    kind: str
    name: str
    id: str

    def shown(self) -> str:
        note = " (its scheduled runs go with it)" if self.kind == "deployment" else ""
        return f"{self.kind} {self.name}{note}"


@dataclass
class Pruning:
    """What the server holds of a scope: how many objects it marks, which are in no file, and
    the blocks to record (those in the files and those recorded that still exist)."""

    scope: Scope
    managed: int
    stale: list[Stale] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)

    def too_many(self) -> bool:
        """More than `PRUNE_LIMIT` deletions, or more than half of what the scope marks."""
        n = len(self.stale)
        return n > PRUNE_LIMIT or 2 * n > self.managed


async def read_pruning(
    client: Any,
    scope: Scope,
    *,
    deployments: Collection[str],
    variables: Collection[str],
    blocks: Collection[str],
    saved: Collection[str] = (),
) -> Pruning:
    """What the server of `client` holds of `scope`, against the names the files hold
    (`flow/deployment`, variable names, `type/name` of blocks). The blocks to record are
    `saved` (those the apply will save: not a skipped one) and the recorded ones that exist."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterId,
    )
    from prefect.client.schemas.objects import Variable
    from prefect.exceptions import ObjectNotFound

    by_tag = DeploymentFilter(tags=DeploymentFilterTags(all_=[scope.tag]))
    deps: list[Any] = []
    while True:  # in pages: a server answers at most PREFECT_API_DEFAULT_LIMIT (200) at once
        page = await client.read_deployments(
            deployment_filter=by_tag, limit=_PAGE, offset=len(deps)
        )
        deps += page
        if len(page) < _PAGE:
            break
    flow_ids = list({d.flow_id for d in deps})
    flows = {
        f.id: f.name
        for f in await client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids)))
    }
    stale = [
        Stale("deployment", name, str(d.id))
        for d in deps
        if (name := f"{flows.get(d.flow_id, '?')}/{d.name}") not in deployments
    ]
    marked_vars: list[Any] = []
    while True:  # the client's read_variables has no filter: Prefect's REST call has one
        body = {"variables": {"tags": {"all_": [scope.tag]}}, "limit": _PAGE,
                "offset": len(marked_vars)}  # fmt: skip
        answer = await client.request("POST", "/variables/filter", json=body)
        page = Variable.model_validate_list(answer.json())
        marked_vars += page
        if len(page) < _PAGE:
            break
    marked_vars = [v for v in marked_vars if v.name != scope.inventory]
    stale += [Stale("variable", v.name, str(v.id)) for v in marked_vars if v.name not in variables]
    recorded = await client.read_variable_by_name(scope.inventory)
    present: dict[str, str] = {}
    for key in recorded.value if recorded is not None and isinstance(recorded.value, list) else []:
        slug, _, name = str(key).partition("/")
        try:
            doc = await client.read_block_document_by_name(name, slug, include_secrets=False)
        except ObjectNotFound:
            continue  # deleted by hand, or never saved (its file was skipped)
        present[str(key)] = str(doc.id)
    stale += [Stale("block", k, i) for k, i in sorted(present.items()) if k not in blocks]
    managed = len(deps) + len(marked_vars) + len(present)
    return Pruning(scope, managed, stale, sorted(set(saved) | set(present)))


async def delete_stale(client: Any, pruning: Pruning, stale: Iterable[Stale]) -> list[Change]:
    """Delete each of `stale` (already gone: skipped), then record the blocks that remain."""
    from uuid import UUID

    from prefect.client.schemas.actions import VariableUpdate
    from prefect.exceptions import ObjectNotFound

    changes = []
    gone: set[str] = set()
    for s in stale:
        try:
            if s.kind == "deployment":  # the server deletes its scheduled runs with it
                await client.delete_deployment(UUID(s.id))
            elif s.kind == "variable":
                await client.delete_variable_by_name(s.name)
            else:
                await client.delete_block_document(UUID(s.id))
        except ObjectNotFound:
            pass  # gone already
        gone.add(f"{s.kind}:{s.name}")
        detail = "its scheduled runs too" if s.kind == "deployment" else ""
        changes.append(Change(s.kind, s.name, "deleted", detail))
    kept = [b for b in pruning.blocks if f"block:{b}" not in gone]
    if await client.read_variable_by_name(pruning.scope.inventory) is not None:
        await client.update_variable(VariableUpdate(name=pruning.scope.inventory, value=kept))
    return changes


async def mark_deployments(client: Any, scope: Scope, names: Collection[str]) -> int:
    """Add the marker to each deployment of `names` (`flow/deployment`) lacking it; how many.

    The server deletes a deployment's future scheduled runs on any update: a marked
    deployment with schedules has them scheduled again at once.
    """
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.exceptions import ObjectNotFound

    from deploy_tools.setup.schedules import schedule_runs_now

    count = 0
    for name in sorted(names):
        try:
            dep = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            continue
        if scope.tag not in (dep.tags or []):
            tags = [*(dep.tags or []), scope.tag]
            await client.update_deployment(dep.id, DeploymentUpdate(tags=tags))
            if dep.schedules:
                await schedule_runs_now(client, dep.id)
            count += 1
    return count


class Pruner:
    """Pruning as `setup apply` and `deploy remote` run it, reporting through `reporter`.

    `check` (before anything is applied) reads the server, lists the prunable objects and
    refuses too many without `yes`; it returns the plan to apply, marked. `finish` (after
    everything else succeeded) marks deployments `prefect deploy` made, then deletes.
    """

    def __init__(
        self,
        scope: Scope,
        api_url: str,
        reporter: Reporter,
        *,
        prune: bool = False,
        yes: bool = False,
        dry_run: bool = False,
        step: str | None = None,
        doing: str = "setup apply",
    ) -> None:
        """`step`: the caller's running step, failed when the check cannot read the server;
        `doing` names the command in a lost-server message."""
        self.scope, self.api_url, self.reporter = scope, api_url, reporter
        self.step, self.doing = step, doing
        self.prune, self.yes, self.dry_run = prune, yes, dry_run
        self.names: dict[str, set[str]] = {}
        self.found: Pruning | None = None

    def _run(self, doing: str, work: Any, step: str | None = None) -> Any:
        from prefect.client.orchestration import get_client

        from deploy_tools.prefect_api import APPLY_RETRIES, connection_failure, describe, use_api
        from deploy_tools.reporting import server_gone_error

        async def go() -> Any:
            async with get_client() as client:
                return await work(client)

        try:
            with use_api(self.api_url, retries=APPLY_RETRIES):
                return asyncio.run(go())
        except Exception as exc:
            lost = connection_failure(exc)
            said = "the Prefect server stopped answering" if lost else f"prune: {doing} failed"
            if step:
                self.reporter.step_finished(step, said, ok=False)
            else:
                self.reporter.failure(f"{said}: {describe(lost or exc)}")
            if lost is not None:
                raise server_gone_error(self.api_url, self.doing, lost) from None
            raise DeployError(f"prune: {doing} failed on {self.api_url}: {describe(exc)}") from None

    def _read(self, step: str | None) -> Pruning:
        async def work(client: Any) -> Pruning:
            return await read_pruning(
                client,
                self.scope,
                deployments=self.names["deployments"],
                variables=self.names["variables"],
                blocks=self.names["blocks"],
                saved=self.names["saved"],
            )

        found: Pruning = self._run("reading what airnub manages", work, step)
        return found

    def check(self, plan: SetupPlan, deployments: Collection[str] | None = None) -> SetupPlan:
        """Read what the scope marks on the server; report the prunable objects; return `plan`
        marked. `deployments` (`flow/name`): those the files hold, default the plan's.

        Raises:
            DeployError: `prune` would delete too many without `yes` (each one listed), or the
                server could not be read; nothing was applied.
        """
        if deployments is None:
            deployments = [f"{d.flow.name}/{d.spec.name}" for d in plan.deployments]
        self.names = {
            "deployments": set(deployments),
            "variables": {v.name for v in plan.variables},
            "blocks": {f"{b.spec.type}/{b.spec.name}" for b in plan.blocks},
            "saved": {f"{b.spec.type}/{b.spec.name}" for b in plan.blocks if not b.skipped_because},
        }
        found = self.found = self._read(self.step)
        stale = found.stale
        info = self.reporter.info
        if not stale:
            info(f"prune: nothing to prune ({found.managed} object(s) marked {self.scope.tag})")
        elif not self.prune:
            info(
                f"prune: {len(stale)} object(s) airnub made are in no file (--prune deletes them):"
            )
            for s in stale:
                self.reporter.info(f"  {s.shown()}")
        else:
            verb = "would delete" if self.dry_run else "will delete"
            info(f"prune: {verb} {len(stale)} of {found.managed} object(s) airnub made:")
            for s in stale:
                self.reporter.info(f"  {verb} {s.shown()}")
            if found.too_many() and not self.yes:
                why = (
                    f"more than {PRUNE_LIMIT}"
                    if len(stale) > PRUNE_LIMIT
                    else f"more than half of the {found.managed} airnub manages"
                )
                message = (
                    f"prune refused: it would delete {len(stale)} object(s), {why} "
                    f"({', '.join(s.shown() for s in stale)}); check the checkout and the "
                    "API URL, then pass --yes"
                )
                if not self.dry_run:
                    self.reporter.failure(f"  {message}")
                    raise DeployError(message + "; nothing was applied")
                self.reporter.info(f"  a real run: {message}")
        return marked(plan, self.scope, found.blocks)

    def finish(self, deployed: Collection[str] = ()) -> list[Change]:
        """After a successful apply (and deploy): mark `deployed` (`flow/name`, made by
        `prefect deploy`), then with `prune` delete what is still prunable and was listed.

        Raises:
            DeployError: the server refused; what was deleted before is reported.
        """
        if self.dry_run or self.found is None:
            return []
        if deployed:
            n = self._run("marking", lambda c: mark_deployments(c, self.scope, deployed))
            if n:
                self.reporter.info(f"  marked {n} deployment(s) {self.scope.tag}")
        if not self.prune or not self.found.stale:
            return []
        self.reporter.step_started("prune", "deleting")
        now = self._read("prune")  # still marked and in no file now, and listed before
        listed = {s.id for s in self.found.stale}
        stale = [s for s in now.stale if s.id in listed]
        work = lambda c: delete_stale(c, now, stale)  # noqa: E731
        changes: list[Change] = self._run("deleting", work, "prune")
        for c in changes:
            self.reporter.info(
                f"  {c.kind} {c.name}: deleted" + (f" ({c.detail})" if c.detail else "")
            )
        self.reporter.step_finished("prune", f"deleted {len(changes)} object(s)")
        return changes


def remote_deployment_names(
    files: Iterable[Path], root: Path, unreadable: list[str] | None = None
) -> set[str]:
    """`flow/name` of every deployment in the remote files `files` (each project's
    `prefect*.yaml` but its local one): any of them may have been deployed. A file entrypoint
    (`path/flows.py:flow`) is read from `root`, the checkout `prefect deploy` runs in.

    A file that cannot be read is named in `unreadable` when it is given (the deploy goes on:
    it does not prune), else refused.

    Raises:
        DeployError: a file or an entrypoint cannot be read (then nothing can be pruned safely).
    """
    import yaml

    from deploy_tools.setup.entrypoints import load_flow

    names = set()
    for path in files:
        try:
            entries = (yaml.safe_load(path.read_text()) or {}).get("deployments") or []
            for e in entries:
                where, _, function = str(e["entrypoint"]).rpartition(":")
                if where.endswith(".py"):
                    where = str(root / where)
                names.add(f"{load_flow(f'{where}:{function}').name}/{e['name']}")
        except Exception as exc:
            problem = f"prune: cannot read the deployments of {path.name} ({exc})"
            if unreadable is None:
                raise DeployError(f"{problem}; nothing was deployed") from None
            unreadable.append(problem)
    return names


def remote_check(
    settings: AirnubSettings,
    reporter: Reporter,
    api_url: str,
    plan: SetupPlan,
    *,
    prune: bool,
    yes: bool,
    dry_run: bool,
) -> tuple[Pruner, SetupPlan]:
    """`deploy remote`'s pruner, checked against every remote file of every project (a
    deployment of `prefect.k8s.yaml` is in a file while `prefect.yaml` is deployed), and the
    remote plan marked.

    Raises:
        DeployError: as `Pruner.check`, or a remote file cannot be read; nothing was deployed.
    """
    from deploy_tools.settings import LOCAL_DEPLOY_FILE

    files = [
        path
        for p in settings.projects
        for path in sorted(p.deploy_dir.glob("prefect*.yaml"))
        if path.name != LOCAL_DEPLOY_FILE
    ]
    pruner = Pruner(
        scope_of(settings, "remote"), api_url, reporter, prune=prune, yes=yes, dry_run=dry_run,
        doing="deploy remote",
    )  # fmt: skip
    unreadable: list[str] | None = None if prune else []
    names = remote_deployment_names(files, settings.project_dir, unreadable)
    for problem in unreadable or []:  # without --prune: a note, the deploy goes on
        reporter.info(f"{problem}: its deployments may be listed below as in no file")
    return pruner, pruner.check(plan, names)
