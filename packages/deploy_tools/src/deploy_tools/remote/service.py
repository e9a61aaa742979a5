"""The remote deploy use case (`airnub deploy remote`): gate → an authenticated check of the API
→ every file validated → build → the same gate inside the built image → push → pools,
variables, blocks → `prefect deploy --all` of each project's `deploy/projects/<name>/prefect.yaml`
(whose build and push steps reuse the image just pushed) → each deployment read back, its image
checked to be the pushed digest. The server's Prefect version is read first: another minor
version than the lock's is a warning, another major is refused before anything is built.

`prefect deploy` runs with bounded retries and timeouts, its full output in
`.local/logs/prefect-deploy-<project>.log`. When it fails partway, the server is read back and
each intended deployment reported new, updated, unchanged or missing (`remote.readback`); a
re-run converges.

Anything that fails before `prefect deploy` leaves the remote without a deployment change; the
error says what to fix. Credentials (PREFECT_API_KEY, PREFECT_API_AUTH_STRING) are read by
Prefect's client from the environment; they are never printed, written or passed as arguments.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy_tools import APP_DIR
from deploy_tools.prefect_api import APPLY_RETRIES, GONE_RETRIES, version_skew
from deploy_tools.remote import worker
from deploy_tools.reporting import (
    DeployError,
    Reporter,
    check_entrypoints,
    report_changes,
    server_gone_error,
)
from deploy_tools.settings import REMOTE_DEPLOY_FILE, AirnubSettings, ProjectSettings
from deploy_tools.setup import SetupFiles, values
from deploy_tools.setup.prune import remote_check, remote_deployment_names

if TYPE_CHECKING:
    from deploy_tools.setup import SetupPlan

Deployments = dict[str, list[dict[str, Any]]]  # each project's `deployments:` of its prefect.yaml


@dataclass(frozen=True)
class RemoteTarget:
    """Where to deploy: the API, the registry, the local image tag."""

    api_url: str
    registry: str
    image: str
    prefect_file: str = REMOTE_DEPLOY_FILE  # in each project's deploy folder


@dataclass
class RemoteResult:
    """What `deploy_remote` did (or, with `dry_run`, would do)."""

    image_ref: str = ""
    deployments: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)  # how to start each pool's worker


def remote_apply_env(settings: AirnubSettings, project: ProjectSettings | None) -> dict[str, str]:
    """`{{ $STACK_* }}` values for the setup files as the flow-run containers see them.

    AIRNUB_DEMO_DATA_URL in the environment is the base of a demo-data server (as the local
    stack's, each project's files under `/<name>/`): each project gets its own folder of it.
    """

    def in_image(p: ProjectSettings) -> str:
        assert p.data_root is not None, p.name
        return f"{APP_DIR}/{p.data_root.relative_to(settings.project_dir).as_posix()}"

    return values.apply_env(
        settings,
        project,
        project_dir=APP_DIR,
        data_root=in_image,
        demo_data_url=os.environ.get("AIRNUB_DEMO_DATA_URL"),
    )


def remote_setup_files(settings: AirnubSettings) -> list[SetupFiles]:
    """The shared folder (the remote's pools) and each project's variables and blocks.

    The projects' local deployment files are not applied: each `prefect.yaml` holds the remote
    ones.
    """
    groups = [SetupFiles(settings.deploy_dir, {**os.environ, **remote_apply_env(settings, None)})]
    for p in settings.projects:
        groups.append(SetupFiles(p.deploy_dir, {**os.environ, **remote_apply_env(settings, p)}))
    return groups


def check_api(api_url: str) -> str | None:
    """The server's Prefect version (GET /admin/version; None for Prefect Cloud, which has no
    such call), then an authenticated call to the API (`/health` answers without credentials).

    Raises:
        DeployError: it does not answer, or refuses the credentials; the message says which.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    from deploy_tools.prefect_api import connection_failure, describe, use_api

    async def probe() -> str | None:
        from prefect.client.base import ServerType

        async with get_client() as client:
            version = None if client.server_type == ServerType.CLOUD else await client.api_version()
            await client.read_work_pools(limit=1)
        return None if version is None else str(version)

    try:
        with use_api(api_url, retries=GONE_RETRIES):
            return asyncio.run(probe())
    except PrefectHTTPStatusError as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise DeployError(
                f"the Prefect API at {api_url} refused the credentials ({status}): set "
                "PREFECT_API_AUTH_STRING (self-hosted, basic auth) or PREFECT_API_KEY (Prefect "
                "Cloud); nothing was deployed"
            ) from None
        raise DeployError(
            f"the Prefect API at {api_url} answered {status}: {describe(exc)}"
        ) from None
    except Exception as exc:
        lost = connection_failure(exc)
        if lost is None:
            raise
        raise DeployError(
            f"no Prefect API answers at {api_url} ({describe(lost)}); check PREFECT_API_URL; "
            "nothing was deployed"
        ) from None


def check_server_version(reporter: Reporter, api_url: str, server: str | None) -> None:
    """Compare the server's Prefect `server` with this checkout's (the locked `prefect`).

    Another minor version is a warning naming both; another major is refused.

    Raises:
        DeployError: another major version (nothing was built, pushed or applied).
    """
    from importlib.metadata import version

    if server is None:  # Prefect Cloud: always compatible with a current client
        return
    ours = version("prefect")
    skew = version_skew(server, ours)
    if skew == "major":
        raise DeployError(
            f"the Prefect server at {api_url} runs Prefect {server}, this checkout's lock has "
            f"prefect {ours}: another major version, refused; nothing was built, pushed or "
            "applied (upgrade the server, or deploy from a checkout locked to its version)"
        )
    if skew == "minor":
        reporter.failure(
            f"warning: the Prefect server at {api_url} runs Prefect {server}, this checkout's "
            f"lock has prefect {ours}: deploying anyway (same major version); upgrade the "
            "server if a deployment or a flow run fails"
        )
    elif skew == "unknown":
        reporter.failure(
            f"warning: the Prefect server at {api_url} reports version {server!r}, not a "
            f"version number: not compared with this checkout's prefect {ours}"
        )


def remote_files(settings: AirnubSettings, name: str = REMOTE_DEPLOY_FILE) -> dict[str, Path]:
    """Each project's remote deployments file `name` (projects without one are left out)."""
    return {
        p.name: p.deploy_dir / name for p in settings.projects if (p.deploy_dir / name).is_file()
    }


def load_remote_file(path: Path) -> dict[str, Any]:
    """A remote deployments file (prefect.yaml), parsed and checked against the setup models.

    Raises:
        DeployError: it is missing or invalid, naming the key.
    """
    import yaml
    from pydantic import ValidationError

    from deploy_tools.setup.models import PrefectFile

    try:
        raw = yaml.safe_load(path.read_text())
        PrefectFile.model_validate(raw, context={"remote": True})  # slugs, fixed anchors
    except FileNotFoundError:
        raise DeployError(f"{path} is missing: nothing to deploy") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise DeployError(f"{path} is invalid, nothing was deployed:\n{exc}") from None
    return dict(raw)


def deploy_remote(
    settings: AirnubSettings,
    reporter: Reporter,
    target: RemoteTarget,
    *,
    dry_run: bool = False,
    prune: bool = False,
    yes: bool = False,
) -> RemoteResult:
    """Deploy every project's remote deployments to `target` (see the module docstring).

    Each deployment deployed gets airnub's marker; with `prune`, what airnub deployed and no
    remote file holds is deleted once everything deployed (`deploy_tools.setup.prune`).

    Raises:
        DeployError: a step failed; what was done before it is reported.
    """
    files = remote_files(settings, target.prefect_file)
    if not files:
        raise DeployError(
            f"no project has remote deployments (deploy/projects/<name>/{target.prefect_file}): "
            "nothing to deploy"
        )
    check_entrypoints(list(files.values()), reporter)
    reporter.step_started("api", f"checking {target.api_url} with the credentials given")
    server_version = check_api(target.api_url)
    reporter.step_finished(
        "api",
        f"{target.api_url} answers and accepts the credentials"
        + (f" (Prefect {server_version})" if server_version else ""),
    )
    check_server_version(reporter, target.api_url, server_version)
    plan, deployments = _validate(settings, reporter, target, files)
    pruner, plan = remote_check(settings, reporter, target.api_url, plan, prune=prune, yes=yes,
                                dry_run=dry_run)  # fmt: skip
    if dry_run:
        return _dry_run(reporter, target, plan, deployments)
    built, pushed = _build_gate_push(settings, reporter, target, files)
    _apply(reporter, target, plan)
    done = {"build": built, "push": pushed}
    result = _deploy(settings, reporter, target, files, deployments, done)
    result.workers = worker.commands_for(
        settings.project_dir, plan, deployments, result.image_ref, target.api_url
    )
    pruner.finish(remote_deployment_names(files.values(), settings.project_dir))
    return result


def _shown(deployment: dict[str, Any]) -> str:
    return f"{deployment['entrypoint']} ({deployment['name']})"


def _validate(
    settings: AirnubSettings, reporter: Reporter, target: RemoteTarget, files: dict[str, Path]
) -> tuple[SetupPlan, Deployments]:
    """Every setup file for the remote, and each project's deployments (on pools it defines).

    Raises:
        DeployError: an invalid file or an unknown pool; nothing was built or deployed.
    """
    from deploy_tools.setup import SetupFilesError, load_plan
    from deploy_tools.setup.plan import pull_userinfo_problems
    from deploy_tools.setup.pools import PoolUse, deployment_job_variable_problems, missing_pools
    from deploy_tools.setup.templating import render

    reporter.step_started("files", "validating deploy/ for the remote")
    docs = {name: load_remote_file(path) for name, path in files.items()}
    deployments = {name: doc["deployments"] for name, doc in docs.items()}
    # `prefect deploy` stores pull steps as resolved from the environment: check them so.
    leaks = [
        problem
        for name, doc in docs.items()
        for problem in pull_userinfo_problems(
            render(doc, os.environ), str(settings.relative(files[name]))
        )
    ]
    if leaks:
        reporter.step_finished("files", "a pull step holds a credential, nothing was deployed:",
                               ok=False)  # fmt: skip
        for problem in leaks:
            reporter.failure(f"  {problem}")
        raise DeployError("deploy remote stopped before building")
    # git_clone runs git in the flow-run container: the build step must ask for it.
    from deploy_tools.remote.steps import git_problems

    no_git = [p for name, doc in docs.items()
              for p in git_problems(doc, str(settings.relative(files[name])))]  # fmt: skip
    if no_git:
        reporter.step_finished("files", "a git_clone pull step needs git in the image:", ok=False)
        for problem in no_git:
            reporter.failure(f"  {problem}")
        raise DeployError("deploy remote stopped before building")
    try:
        plan = load_plan(remote_setup_files(settings), base=settings.project_dir, target="remote")
    except SetupFilesError as exc:
        reporter.step_finished("files", "invalid setup files, nothing was deployed:", ok=False)
        for problem in exc.problems:
            reporter.failure(f"  {problem}")
        raise DeployError("deploy remote stopped before building") from None
    uses = [
        PoolUse(
            settings.relative(files[project]),
            f"deployments[{i}] ({d['name']}).work_pool.name",
            d["work_pool"]["name"],
            d["work_pool"].get("job_variables") or {},
        )
        for project, entries in deployments.items()
        for i, d in enumerate(entries)
    ]
    defined = {p.name for p in plan.work_pools}
    nowhere = "no file under deploy/work_pools/ defines it for the remote"
    unknown = missing_pools(uses, defined, nowhere=nowhere)
    unknown += deployment_job_variable_problems(uses, plan.work_pools)
    if unknown:
        reporter.step_finished("files", "a deployment's work pool does not fit:", ok=False)
        for problem in unknown:
            reporter.failure(f"  {problem}")
        raise DeployError("deploy remote stopped before building")
    reporter.step_finished(
        "files",
        f"{len(plan.work_pools)} pool(s), {len(plan.variables)} variable(s), "
        f"{len(plan.blocks)} block(s), {sum(map(len, deployments.values()))} deployment(s) of "
        f"{len(files)} project(s)",
    )
    for name in (p.name for p in settings.projects if p.name not in files):
        reporter.info(
            f"project {name}: no remote deployments (no deploy/projects/{name}/"
            f"{target.prefect_file}): not deployed"
        )
    return plan, deployments


def _dry_run(
    reporter: Reporter, target: RemoteTarget, plan: SetupPlan, deployments: Deployments
) -> RemoteResult:
    """Report what a real run would do; touch nothing."""
    reporter.info(f"would build {target.image}, import every entrypoint in it, and push it "
                  f"to {target.registry}")  # fmt: skip
    for p in plan.work_pools:
        reporter.info(f"would apply work pool {p.name} ({p.type})")
    for v in plan.variables:
        reporter.info(f"would apply variable {v.name}")
    for b in plan.blocks:
        note = f" (skipped: {b.skipped_because})" if b.skipped_because else ""
        reporter.info(f"would apply block {b.spec.type}/{b.spec.name}{note}")
    for project, entries in deployments.items():
        for d in entries:
            reporter.info(f"would deploy {project}: {_shown(d)} with the image by digest")
    return RemoteResult(deployments=[_shown(d) for e in deployments.values() for d in e])


def _build_gate_push(
    settings: AirnubSettings, reporter: Reporter, target: RemoteTarget, files: dict[str, Path]
) -> tuple[dict[str, str], dict[str, str]]:
    """Build the image (reused when up to date), import every entrypoint in it, push it.

    Returns the build and push steps' outputs (`deploy_tools.remote.steps`).

    Raises:
        DeployError: a step failed; nothing was deployed.
    """
    from deploy_tools.image.gate import check_in_image, image_targets
    from deploy_tools.remote import steps

    # One image for every file: with git when a file's build step asks (`with_git: true`).
    with_git = any(steps.wants_git(load_remote_file(path)) for path in files.values())
    step = "image"
    variant = " with git" if with_git else ""
    reporter.step_started(step, f"building {target.image}{variant} (reused when up to date)")
    try:
        built = steps.build_image(
            target.image, project=str(settings.project_dir), with_git=with_git
        )
        reporter.step_finished(
            step,
            f"{'built' if built['built'] == 'yes' else 'up to date'}{variant}: {built['digest']}",
        )
        step = "gate"
        reporter.step_started(step, f"importing every entrypoint inside {built['image']}")
        # Only what the remote will run: each project's remote file (none: nothing of it).
        gate_files = {p.name: [files[p.name]] if p.name in files else [] for p in settings.projects}
        problems = check_in_image(built["image"], image_targets(settings, gate_files))
        if problems:
            reporter.step_finished(step, "the image lacks what the deployments need", ok=False)
            for line in problems:
                reporter.failure(f"  {line}")
            raise DeployError("nothing was pushed or deployed: rebuild the image after `uv lock`")
        reporter.step_finished(step, "every entrypoint and demo_data module imports in the image")
        step = "push"
        reporter.step_started(step, f"pushing to {target.registry}")
        pushed = steps.push_image(built["image"], target.registry)
    except DeployError:
        raise
    except RuntimeError as exc:  # a build or push step's StepError, or the gate did not run
        reporter.step_finished(step, "failed, nothing was deployed", ok=False)
        raise DeployError(str(exc)) from None
    reporter.step_finished("push", pushed["image_ref"])
    return built, pushed


def _apply(reporter: Reporter, target: RemoteTarget, plan: SetupPlan) -> None:
    """Pools, variables and blocks on the remote.

    Raises:
        DeployError: the remote refused one; no deployment was changed.
    """
    from deploy_tools.prefect_api import use_api
    from deploy_tools.setup import apply_plan

    reporter.step_started("setup", "applying pools, variables and blocks")
    try:
        with use_api(target.api_url, retries=APPLY_RETRIES):
            changes = asyncio.run(apply_plan(plan))
    except Exception as exc:
        reporter.step_finished("setup", f"failed: {type(exc).__name__}: {exc}", ok=False)
        raise DeployError("deploy remote stopped before deploying") from None
    report_changes(reporter, changes)


class PrefectDeployError(DeployError):
    """`prefect deploy` of one project's file failed (its cause was reported in one line)."""


# `prefect deploy` talks to the remote with bounded patience: a lost connection is retried
# twice (2 + 4 s back-off, not Prefect's default 5 retries, ~90 s), a request waits 30 s, and
# the whole command (its build and push steps are reused, see steps.py) at most 10 minutes.
DEPLOY_CLIENT_ENV = {"PREFECT_CLIENT_MAX_RETRIES": str(APPLY_RETRIES),
                     "PREFECT_API_REQUEST_TIMEOUT": "30"}  # fmt: skip
DEPLOY_TIMEOUT = 600.0


def _deploy(
    settings: AirnubSettings,
    reporter: Reporter,
    target: RemoteTarget,
    files: dict[str, Path],
    deployments: Deployments,
    done: dict[str, dict[str, str]],
) -> RemoteResult:
    """`prefect deploy` each project's file (its steps reuse `done`), then read each back.

    What the server has of the intended deployments is read first: when a `prefect deploy`
    fails, the server is read again and each is reported new, updated, unchanged or missing
    (`deploy_tools.remote.readback`).

    Raises:
        DeployError: a `prefect deploy` failed (after the readback), or a deployment runs
            another image than the pushed one.
    """
    from deploy_tools.prefect_api import connection_failure
    from deploy_tools.remote import readback
    from deploy_tools.setup.schedules import schedule_deployed

    image_ref = done["push"]["image_ref"]
    result = RemoteResult(image_ref)
    keys = [(d["entrypoint"], d["name"]) for entries in deployments.values() for d in entries]
    try:
        before = readback.read_deployments(target.api_url, keys)
    except Exception as exc:
        if (lost := connection_failure(exc)) is None:
            raise
        raise server_gone_error(target.api_url, "the read of its deployments", lost) from None
    for project, path in files.items():
        try:
            _prefect_deploy(settings, reporter, target, project, path, done)
        except PrefectDeployError as exc:
            what_now = readback.report_partial(reporter, target.api_url, keys, before, image_ref)
            raise DeployError(f"{exc} — {what_now}") from None
        try:
            schedule_deployed(
                target.api_url, [(d["entrypoint"], d["name"]) for d in deployments[project]]
            )
        except Exception as exc:
            if (lost := connection_failure(exc)) is None:
                raise
            raise server_gone_error(target.api_url, "scheduling the deployed runs", lost) from None
        result.deployments += verify_deployments(target.api_url, deployments[project], image_ref)
    reporter.step_finished(
        "deploy",
        f"{len(result.deployments)} deployment(s) of {len(files)} project(s), image {image_ref}",
    )
    return result


def deploy_log(settings: AirnubSettings, project: str) -> Path:
    """Where `prefect deploy`'s full output for `project` goes (each run appended, after a
    header line with its time)."""
    return settings.local_dir / "logs" / f"prefect-deploy-{project}.log"


_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception)\b.*)$")


def failure_cause(output: str) -> str:
    """The line of `prefect deploy`'s output that says why it failed: its last exception line
    (`DeploymentApplyError: …`), else its last line.

    Example:
        >>> failure_cause("Traceback …\\n  raise x\\nhttpx.ReadError: reset\\nAn exception occurred.")
        'httpx.ReadError: reset'
    """
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if found := _EXCEPTION_LINE.match(line):
            return found.group(1)[:300]
    return lines[-1][:300] if lines else "no output"


def _prefect_deploy(
    settings: AirnubSettings,
    reporter: Reporter,
    target: RemoteTarget,
    project: str,
    path: Path,
    done: dict[str, dict[str, str]],
) -> None:
    """`prefect deploy --all --prefect-file <path>` from the checkout; its steps reuse `done`.

    Its full output goes to `deploy_log(settings, project)`.

    Raises:
        PrefectDeployError: Prefect failed or timed out; the one-line cause is reported.
    """
    from deploy_tools import server_settings
    from deploy_tools.prefect_api import server_answers
    from deploy_tools.remote import steps

    shown = settings.relative(path)
    log = deploy_log(settings, project)
    reporter.step_started("deploy", f"prefect deploy --all --prefect-file {shown}")
    prefect = Path(sys.executable).with_name("prefect")
    env = {
        **server_settings.with_telemetry(os.environ, settings.telemetry),
        "PREFECT_API_URL": target.api_url,
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_DEPLOYMENTS_CLEAR_SCHEDULES_ON_EMPTY": "true",  # `schedules: []` clears them
        **DEPLOY_CLIENT_ENV,
        "AIRNUB_IMAGE": target.image,
        "AIRNUB_REGISTRY": target.registry,
        steps.DONE_ENV: json.dumps(done),
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} prefect deploy --all "
                  f"--prefect-file {shown}\n".encode())  # fmt: skip
        out.flush()
        start = out.tell()
        try:
            code = subprocess.run(
                [str(prefect), "--no-prompt", "deploy", "--all", "--prefect-file", str(path)],
                cwd=settings.project_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, timeout=DEPLOY_TIMEOUT, check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    if code == 0:
        return
    cause = failure_cause(log.read_bytes()[start:].decode(errors="replace"))  # this run's
    if code is None:
        cause = f"it did not finish within {DEPLOY_TIMEOUT:.0f} s and was stopped"
    elif not server_answers(target.api_url):
        cause = f"the Prefect server at {target.api_url} stopped answering ({cause})"
    reporter.step_finished("deploy", f"prefect deploy of {shown} failed: {cause}", ok=False)
    reporter.failure(f"  prefect deploy's full output: {settings.relative(log)}")
    raise PrefectDeployError(f"prefect deploy of {shown} failed")  # the cause: reported above


def verify_deployments(api_url: str, entries: list[dict[str, Any]], image_ref: str) -> list[str]:
    """Read each deployment back: its image must be `image_ref` (Prefect drops an unresolved
    `{{ push.image_ref }}` with only a warning, and the pool's default image would run).

    Raises:
        DeployError: a deployment is missing or runs another image.
    """
    from prefect.client.orchestration import get_client

    from deploy_tools.prefect_api import use_api

    async def read() -> list[tuple[str, Any]]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

        names = sorted({d["name"] for d in entries})
        async with get_client() as client:
            deps = await client.read_deployments(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
            )
            flows = {f.id: f.name for f in await client.read_flows()}
        by_key = {(d.entrypoint, d.name): d for d in deps}
        out = []
        for e in entries:
            dep = by_key.get((e["entrypoint"], e["name"]))
            if dep is None:
                out.append((f"{e['entrypoint']} ({e['name']})", None))
            else:
                image = (dep.job_variables or {}).get("image")
                out.append((f"{flows.get(dep.flow_id, '?')}/{dep.name}", image))
        return out

    with use_api(api_url, retries=APPLY_RETRIES):
        found = asyncio.run(read())
    wrong = [f"{n}: {img!r}" for n, img in found if img != image_ref]
    if wrong:
        raise DeployError(f"deployments without the pushed image {image_ref}: {'; '.join(wrong)}")
    return [n for n, _ in found]
