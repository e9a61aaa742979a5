"""Read and validate every file under `deploy/` before anything is applied.

`load_plan` returns a `SetupPlan` holding fully resolved objects, or raises `SetupFilesError`
listing every problem as `<file>: <key>: <what was expected>`.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from deploy_tools.settings import shown_path
from deploy_tools.setup.entrypoints import load_flow
from deploy_tools.setup.models import (
    BlockFile,
    DeploymentEntry,
    PrefectFile,
    VariableFile,
    WorkPoolFile,
)
from deploy_tools.setup.pools import (
    PoolUse,
    base_job_template,
    deployment_job_variable_problems,
    missing_pools,
)
from deploy_tools.setup.templating import render, template_problems
from pipeline_core.urls import has_userinfo

M = TypeVar("M", bound=BaseModel)
# The key paths of pull steps, a file's or a deployment's own.
_PULL_KEY = re.compile(r"(deployments\[\d+\]\.)?pull(\[|$)")


def _is_pull(key: str) -> bool:
    return _PULL_KEY.match(key) is not None


class SetupFilesError(ValueError):
    """One or more files under deploy/ are invalid; nothing was applied."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class PlannedBlock:
    """A block document to apply; `skipped_because` is set when `when_env` is not satisfied."""

    file: Path
    spec: BlockFile
    data: dict[str, Any] = field(default_factory=dict)  # includes secrets: never log it
    skipped_because: str | None = None


@dataclass
class PlannedDeployment:
    """A deployment with its loaded flow and resolved fields; `where` and `key` name it in
    problems (`deploy/projects/alpha/prefect.local.yaml`, `deployments[0] (local)`)."""

    file: Path
    spec: DeploymentEntry
    flow: Any
    pull_steps: list[dict[str, Any]]
    where: str = ""
    key: str = ""


@dataclass
class SetupPlan:
    """Everything `setup apply` will make true on the server."""

    work_pools: list[WorkPoolFile] = field(default_factory=list)
    variables: list[VariableFile] = field(default_factory=list)
    blocks: list[PlannedBlock] = field(default_factory=list)
    deployments: list[PlannedDeployment] = field(default_factory=list)


def _pydantic_problems(where: str, exc: ValidationError, *, show_input: bool = True) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = f" (got {err['input']!r})" if show_input and err["type"] != "missing" else ""
        out.append(f"{where}: {loc}: {err['msg']}{got}")
    return out


def _read(
    path: Path,
    model: type[M],
    env: Mapping[str, str],
    where: str,
    problems: list[str],
    *,
    template_keys: tuple[str, ...],
) -> M | None:
    """`path` read, its `{{ $NAME }}` placeholders under `template_keys` resolved, validated.

    In pull steps, Prefect placeholders other than `{{ $NAME }}` are kept (as `prefect deploy`
    keeps them): the worker resolves them when a flow run starts.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        hint = ""
        if isinstance(exc, yaml.YAMLError) and "{{" in path.read_text():
            hint = ' (a value holding {{ $NAME }} must be quoted: key: "{{ $NAME }}")'
        problems.append(f"{where}: not valid YAML{hint}: {exc}")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
        return None
    found = [
        f"{where}: {p}"
        for key in template_keys
        if key in raw
        for p in template_problems(raw[key], env, key, keep_others=_is_pull)
    ]
    if found:
        problems.extend(found)
        return None
    for key in template_keys:
        if key in raw:
            raw[key] = render(raw[key], env)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(where, exc))
        return None


def _import_callable(ref: str) -> Callable[[Any], object]:
    module, _, attr = ref.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise TypeError(f"{ref} is not callable")
    return fn  # type: ignore[no-any-return]


_SOURCE_HINT = "name it in the source's `auth`"
# git_clone's own credentials keys (prefect.deployments.steps.pull.git_clone).
_PULL_HINT = "pass it as the step's `access_token` or `credentials` ({{ prefect.blocks.… }})"


def _userinfo_problems(value: Any, where: str, key: str, hint: str = _SOURCE_HINT) -> list[str]:
    """A problem for each text in `value` that is a URL with a user name or password.

    Checked for every variable value, deployment parameter and pull step (a `git_clone`
    repository): Prefect stores those as given, so a credential there would be readable by
    anyone with API access. The problem names the key, never the URL.
    """
    if isinstance(value, str):
        if "://" in value and has_userinfo(value):
            return [
                f"{where}: {key}: a URL with a user name or password; keep credentials in a "
                f"Secret block (deploy/projects/<name>/blocks/) and {hint}"
            ]
        return []
    if isinstance(value, dict):
        return [
            p for k, v in value.items() for p in _userinfo_problems(v, where, f"{key}.{k}", hint)
        ]
    if isinstance(value, list):
        return [
            p
            for i, v in enumerate(value)
            for p in _userinfo_problems(v, where, f"{key}[{i}]", hint)
        ]
    return []


def pull_userinfo_problems(doc: Mapping[str, Any], where: str) -> list[str]:
    """`_userinfo_problems` of a deployment file's pull steps: the file's and each deployment's.

    `doc` is the file with its `{{ $NAME }}` already resolved (a repository given as
    `{{ $GIT_URL }}` is checked as the URL `prefect deploy` would store).
    """
    problems = _userinfo_problems(doc.get("pull"), where, "pull", _PULL_HINT)
    for i, dep in enumerate(doc.get("deployments") or []):
        if isinstance(dep, Mapping):
            key = f"deployments[{i}] ({dep.get('name')}).pull"
            problems += _userinfo_problems(dep.get("pull"), where, key, _PULL_HINT)
    return problems


def _plan_variable(spec: VariableFile, where: str, problems: list[str]) -> None:
    problems.extend(_userinfo_problems(spec.value, where, "value"))
    if spec.validate_with is None:
        return
    try:
        check = _import_callable(spec.validate_with)
    except (ImportError, AttributeError, TypeError) as exc:
        problems.append(f"{where}: validate_with: cannot import {spec.validate_with} ({exc})")
        return
    try:
        check(spec.value)
    except ValueError as exc:
        problems.append(f"{where}: value: {exc}")


def block_class(slug: str) -> Any:
    """The Block class of a type slug; installed collections are imported only when needed.

    Raises:
        KeyError: no such block type.
    """
    import prefect.blocks.system
    import prefect.filesystems  # noqa: F401 - registers the core block types
    from prefect.blocks.core import Block
    from prefect.utilities.dispatch import lookup_type

    try:
        return lookup_type(Block, slug)
    except KeyError:
        # Importing every collection (prefect-aws, prefect-docker) costs seconds: only now.
        return Block.get_block_class_from_key(slug)


def _plan_block(
    spec: BlockFile, file: Path, where: str, env: Mapping[str, str], problems: list[str]
) -> PlannedBlock:
    missing_when = [name for name in spec.when_env if not env.get(name)]
    if missing_when:
        return PlannedBlock(file, spec, skipped_because=f"{', '.join(missing_when)} not set")
    try:
        block_cls = block_class(spec.type)
    except KeyError:
        problems.append(
            f"{where}: type: unknown block type {spec.type!r} (is its collection installed?)"
        )
        return PlannedBlock(file, spec)
    # only now: a skipped block may use variables that are not set
    found = template_problems(spec.data, env, "data")
    if found:
        problems.extend(f"{where}: {p}" for p in found)
        return PlannedBlock(file, spec)
    data: dict[str, Any] = render(spec.data, env)
    for key, var in spec.secret_env.items():
        if key in data:
            problems.append(
                f"{where}: secret_env.{key}: also given in data; secrets only come from env"
            )
        value = env.get(var)
        if not value:
            problems.append(f"{where}: secret_env.{key}: environment variable {var} is not set")
        else:
            data[key] = value
    for dotted, var in spec.optional_env.items():  # set only when the variable is
        if env.get(var):
            head, *rest = dotted.split(".")
            target = data
            for part in [head, *rest][:-1]:
                target = target.setdefault(part, {})
            target[[head, *rest][-1]] = env[var]
    unknown = set(spec.secret_env) | set(spec.block_refs) | set(spec.data)
    unknown |= {k.split(".")[0] for k in spec.optional_env}
    unknown -= set(block_cls.model_fields)
    for key in sorted(unknown):
        problems.append(f"{where}: {key}: not a field of block type {spec.type!r}")
    for key, ref in spec.block_refs.items():
        if "/" not in ref:
            problems.append(
                f"{where}: block_refs.{key}: expected '<type-slug>/<name>', got {ref!r}"
            )
    if not problems:
        try:
            # Referenced blocks are checked when applied; validate the rest of the fields now.
            block_cls.model_validate({**data, **{k: None for k in spec.block_refs}})
        except ValidationError as exc:
            errs = [e for e in exc.errors() if e["loc"] and e["loc"][0] not in spec.block_refs]
            if errs:
                problems.extend(
                    f"{where}: data.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errs
                )
    return PlannedBlock(file, spec, data=data)


def _plan_deployments(
    file: Path, where: str, env: Mapping[str, str], problems: list[str]
) -> list[PlannedDeployment]:
    doc = _read(file, PrefectFile, env, where, problems, template_keys=("pull", "deployments"))
    if doc is None:
        return []
    problems.extend(pull_userinfo_problems(doc.model_dump(), where))
    planned = []
    for i, dep in enumerate(doc.deployments):
        key = f"deployments[{i}] ({dep.name})"
        problems.extend(_userinfo_problems(dep.parameters, where, f"{key}.parameters"))
        pull = dep.pull if dep.pull is not None else doc.pull
        if pull is None:
            problems.append(
                f"{where}: {key}.pull: missing; write `pull:` explicitly "
                "(otherwise Prefect records the deploying machine's folder)"
            )
            continue
        try:
            flow = load_flow(dep.entrypoint)
        except ValueError as exc:
            problems.append(f"{where}: {key}.entrypoint: {dep.entrypoint}: {exc}")
            continue
        planned.append(PlannedDeployment(file, dep, flow, pull, where, key))
    return planned


def _with_template_file(
    pool: WorkPoolFile, path: Path, where: str, problems: list[str]
) -> WorkPoolFile | None:
    """`pool` with its `base_job_template` file (beside `path`) read in."""
    name = str(pool.base_job_template)
    file = path.parent / name
    try:
        template = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{where}: base_job_template: {name}: {exc}")
        return None
    if not isinstance(template, dict) or not {"job_configuration", "variables"} <= set(template):
        problems.append(f"{where}: base_job_template: {name}: not a base job template "
                        "(needs job_configuration and variables)")  # fmt: skip
        return None
    return pool.model_copy(update={"base_job_template": template})


@dataclass(frozen=True)
class SetupFiles:
    """One folder of setup files, read with one set of `{{ $NAME }}` values.

    `folder` may hold `work_pools/`, `variables/` and `blocks/` (each optional);
    `deployments` are deployment files (prefect.yaml format). Each project has its own folder
    and values (its data root, its demo-data URL); the shared folder holds the work pools.
    """

    folder: Path
    env: Mapping[str, str]
    deployments: tuple[Path, ...] = ()


def load_plan(groups: Sequence[SetupFiles], *, base: Path, target: str = "local") -> SetupPlan:
    """Validate every group's work pools, variables, blocks and deployment files.

    File names in problems are relative to `base` (the project folder). Only the work pools
    whose `stacks` include `target` (`local` or `remote`) are planned.

    Raises:
        SetupFilesError: every problem found, each naming its file and key.
    """
    problems: list[str] = []
    plan = SetupPlan()
    defined: list[WorkPoolFile] = []  # every valid pool file, for either target
    origin: dict[int, Path] = {}  # id of a planned object -> its file, for duplicate names

    for group in groups:
        env = group.env
        for path in sorted((group.folder / "work_pools").glob("*.yaml")):
            where = shown_path(path, base)
            pool = _read(
                path, WorkPoolFile, env, where, problems, template_keys=("name", "job_variables")
            )
            if pool and isinstance(pool.base_job_template, str):
                pool = _with_template_file(pool, path, where, problems)
            if pool:
                try:
                    base_job_template(pool)
                    defined.append(pool)
                except ValueError as exc:
                    problems.extend(f"{where}: {line}" for line in str(exc).splitlines())
                if target in pool.stacks:  # every pool file is validated, for either target
                    plan.work_pools.append(pool)
                    origin[id(pool)] = path

        for path in sorted((group.folder / "variables").glob("*.yaml")):
            where = shown_path(path, base)
            var = _read(path, VariableFile, env, where, problems, template_keys=("value",))
            if var:
                _plan_variable(var, where, problems)
                plan.variables.append(var)
                origin[id(var)] = path

        for path in sorted((group.folder / "blocks").glob("*.yaml")):
            where = shown_path(path, base)
            spec = _read(path, BlockFile, env, where, problems, template_keys=())
            if spec:
                block_problems: list[str] = []
                plan.blocks.append(_plan_block(spec, path, where, env, block_problems))
                problems.extend(block_problems)

        for file in group.deployments:
            plan.deployments.extend(_plan_deployments(file, shown_path(file, base), env, problems))

    _check_names(plan, base, origin, problems)
    uses = [
        PoolUse(
            d.where,
            f"{d.key}.work_pool.name",
            d.spec.work_pool.name,
            d.spec.work_pool.job_variables,
        )
        for d in plan.deployments
    ]
    problems.extend(deployment_job_variable_problems(uses, defined))
    if problems:
        raise SetupFilesError(problems)
    # Blocks that reference others are applied after them.
    plan.blocks.sort(key=lambda b: bool(b.spec.block_refs))
    return plan


def pool_problems(plan: SetupPlan, on_server: Collection[str]) -> list[str]:
    """Each deployment whose work pool neither the files define nor the server has.

    Checked once the server's pools are known, before anything is written (`apply_plan`):
    otherwise the deployment fails with a 404 after the objects before it were applied.
    """
    uses = [
        PoolUse(d.where, f"{d.key}.work_pool.name", d.spec.work_pool.name) for d in plan.deployments
    ]
    return missing_pools(
        uses,
        {p.name for p in plan.work_pools} | set(on_server),
        nowhere="no file under deploy/work_pools/ defines it and the server has none of that name",
    )


def _check_names(plan: SetupPlan, base: Path, origin: dict[int, Path], problems: list[str]) -> None:
    """Names are global on the server: two projects may not both define one."""
    seen: dict[str, Path] = {}
    for kind, named in (
        ("work pool", [(p.name, origin[id(p)]) for p in plan.work_pools]),
        ("variable", [(v.name, origin[id(v)]) for v in plan.variables]),
        ("block", [(f"{b.spec.type}/{b.spec.name}", b.file) for b in plan.blocks]),
        ("deployment", [(f"{d.flow.name}/{d.spec.name}", d.file) for d in plan.deployments]),
    ):
        for name, file in named:
            first = seen.setdefault(f"{kind}:{name}", file)
            if first is not file:
                problems.append(
                    f"{shown_path(file, base)}: {kind} {name!r} is already defined in {shown_path(first, base)}"
                )
    blocks = {f"{b.spec.type}/{b.spec.name}": b for b in plan.blocks}
    for b in plan.blocks:
        for key, ref in b.spec.block_refs.items():
            target = blocks.get(ref)
            if b.skipped_because is None and target is not None and target.skipped_because:
                problems.append(
                    f"{shown_path(b.file, base)}: block_refs.{key}: {ref} is skipped "
                    f"({target.skipped_because})"
                )
