"""The import gate: load every deployment entrypoint without a server."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class EntrypointProblem:
    """An entrypoint that does not load as a Prefect flow."""

    file: Path
    deployment: str  # `flow/deployment`, as Prefect names it (e.g. `alpha_ingest/local`)
    entrypoint: str
    error: str


def load_flow(entrypoint: str) -> Any:
    """Import `module.path:flow` (or `file.py:flow`, relative to the cwd) and return the flow.

    Raises:
        ValueError: the entrypoint does not import or is not a flow; the message says why.
    """
    from prefect import Flow
    from prefect.utilities.importtools import import_object

    if ":" not in entrypoint:
        raise ValueError("expected '<module.path>:<flow function>'")
    try:
        obj = import_object(entrypoint)
    except Exception as exc:  # any import-time failure of user code is reported, not raised
        cause = exc.__cause__ or exc
        raise ValueError(f"{type(cause).__name__}: {cause}") from exc
    if not isinstance(obj, Flow):
        raise ValueError(f"{entrypoint} is a {type(obj).__name__}, not a Prefect flow")
    return obj


def flow_name(dep: dict[str, Any], entrypoint: str, flow: Any = None) -> str:
    """The flow part of `flow/deployment`, as Prefect names the deployment.

    The loaded flow's name when it imports (`flows_alpha.ingest:ingest` → `alpha_ingest`);
    for one that does not, its `flow_name` key when set, else the entrypoint's function name.
    """
    if flow is not None:
        return str(flow.name)
    return str(dep.get("flow_name") or entrypoint.rpartition(":")[2] or "?")


def check_entrypoints(files: list[Path]) -> tuple[int, list[EntrypointProblem]]:
    """Import each deployment's entrypoint in `files`; return (how many checked, problems).

    Two deployments of one file with the same `flow/deployment` name are a problem too: the
    second would overwrite the first on the server.
    """
    problems: list[EntrypointProblem] = []
    checked = 0
    for file in files:
        try:
            doc = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            problems.append(EntrypointProblem(file, "-", "-", f"cannot read: {exc}"))
            continue
        seen: dict[str, str] = {}
        for i, dep in enumerate(doc.get("deployments") or []):
            entrypoint = str(dep.get("entrypoint", ""))
            checked += 1
            flow, error = None, None
            try:
                flow = load_flow(entrypoint)
            except ValueError as exc:
                error = str(exc)
            name = f"{flow_name(dep, entrypoint, flow)}/{dep.get('name', f'deployments[{i}]')}"
            if error is not None:
                problems.append(EntrypointProblem(file, name, entrypoint, error))
            elif name in seen:
                problems.append(EntrypointProblem(
                    file, name, entrypoint, f"{name} is also the deployment of {seen[name]}"
                ))  # fmt: skip
            else:
                seen[name] = entrypoint
    # Imports of user modules may have been cached half-initialised; nothing else relies on them.
    sys.modules.pop("__prefect_loader__", None)
    return checked, problems
