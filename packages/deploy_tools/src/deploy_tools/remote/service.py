"""The remote deploy use case (`airnub deploy remote`): gate → an authenticated check of the API
→ every file validated → build → the same gate inside the built image → push → pools,
variables, blocks → `prefect deploy --all` of each project's `deploy/projects/<name>/prefect.yaml`
(whose build and push steps reuse the image just pushed) → each deployment read back, its image
checked to be the pushed digest.

Anything that fails before `prefect deploy` leaves the remote without a deployment change; the
error says what to fix. Credentials (PREFECT_API_KEY, PREFECT_API_AUTH_STRING) are read by
Prefect's client from the environment; they are never printed, written or passed as arguments.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy_tools import APP_DIR
from deploy_tools.prefect_api import APPLY_RETRIES, GONE_RETRIES
from deploy_tools.reporting import DeployError, Reporter, check_entrypoints, report_changes
from deploy_tools.settings import REMOTE_DEPLOY_FILE, AirnubSettings, ProjectSettings
from deploy_tools.setup import SetupFiles, values

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


def check_api(api_url: str) -> None:
    """An authenticated call to the API (`/health` answers without credentials).

    Raises:
        DeployError: it does not answer, or refuses the credentials; the message says which.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    from deploy_tools.prefect_api import connection_failure, describe, use_api

    async def probe() -> None:
        async with get_client() as client:
            await client.read_work_pools(limit=1)

    try:
        with use_api(api_url, retries=GONE_RETRIES):
            asyncio.run(probe())
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
        PrefectFile.model_validate(raw)
    except FileNotFoundError:
        raise DeployError(f"{path} is missing: nothing to deploy") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise DeployError(f"{path} is invalid, nothing was deployed:\n{exc}") from None
    return dict(raw)


def deploy_remote(
    settings: AirnubSettings, reporter: Reporter, target: RemoteTarget, *, dry_run: bool = False
) -> RemoteResult:
    """Deploy every project's remote deployments to `target` (see the module docstring).

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
    check_api(target.api_url)
    reporter.step_finished("api", f"{target.api_url} answers and accepts the credentials")
    plan, deployments = _validate(settings, reporter, target, files)
    if dry_run:
        return _dry_run(reporter, target, plan, deployments)
    built, pushed = _build_gate_push(settings, reporter, target, files)
    _apply(reporter, target, plan)
    return _deploy(settings, reporter, target, files, deployments, {"build": built, "push": pushed})


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
    from deploy_tools.setup.pools import PoolUse, missing_pools

    reporter.step_started("files", "validating deploy/ for the remote")
    deployments = {name: load_remote_file(path)["deployments"] for name, path in files.items()}
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
        )
        for project, entries in deployments.items()
        for i, d in enumerate(entries)
    ]
    defined = {p.name for p in plan.work_pools}
    nowhere = "no file under deploy/work_pools/ defines it for the remote"
    unknown = missing_pools(uses, defined, nowhere=nowhere)
    if unknown:
        reporter.step_finished("files", "a deployment names an unknown pool:", ok=False)
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

    step = "image"
    reporter.step_started(step, f"building {target.image} (reused when up to date)")
    try:
        built = steps.build_image(target.image, project=str(settings.project_dir))
        reporter.step_finished(
            step, f"{'built' if built['built'] == 'yes' else 'up to date'}: {built['digest']}"
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


def _deploy(
    settings: AirnubSettings,
    reporter: Reporter,
    target: RemoteTarget,
    files: dict[str, Path],
    deployments: Deployments,
    done: dict[str, dict[str, str]],
) -> RemoteResult:
    """`prefect deploy` each project's file (its steps reuse `done`), then read each back."""
    image_ref = done["push"]["image_ref"]
    result = RemoteResult(image_ref)
    for project, path in files.items():
        _prefect_deploy(settings, reporter, target, path, done)
        result.deployments += verify_deployments(target.api_url, deployments[project], image_ref)
    reporter.step_finished(
        "deploy",
        f"{len(result.deployments)} deployment(s) of {len(files)} project(s), image {image_ref}",
    )
    return result


def _prefect_deploy(
    settings: AirnubSettings,
    reporter: Reporter,
    target: RemoteTarget,
    path: Path,
    done: dict[str, dict[str, str]],
) -> None:
    """`prefect deploy --all --prefect-file <path>` from the checkout; its steps reuse `done`.

    Raises:
        DeployError: Prefect failed (its last lines are reported).
    """
    from deploy_tools import server_settings
    from deploy_tools.remote import steps

    shown = settings.relative(path)
    reporter.step_started("deploy", f"prefect deploy --all --prefect-file {shown}")
    prefect = Path(sys.executable).with_name("prefect")
    env = {
        **server_settings.with_telemetry(os.environ, settings.telemetry),
        "PREFECT_API_URL": target.api_url,
        "PREFECT_CLI_PROMPT": "false",
        "AIRNUB_IMAGE": target.image,
        "AIRNUB_REGISTRY": target.registry,
        steps.DONE_ENV: json.dumps(done),
    }
    proc = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all", "--prefect-file", str(path)],
        cwd=settings.project_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        reporter.step_finished("deploy", f"prefect deploy of {shown} failed ({proc.returncode})",
                               ok=False)  # fmt: skip
        for line in (proc.stdout + proc.stderr).strip().splitlines()[-15:]:
            reporter.failure(f"  {line}")
        raise DeployError("fix the error above and run `deploy remote` again")


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
