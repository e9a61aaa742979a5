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
    deployment: str  # `flow/deployment`, as Prefect names it (e.g. `ingest/local`)
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


def _flow_name(dep: dict[str, Any], entrypoint: str) -> str:
    """The flow part of `flow/deployment` for a deployment whose flow may not even import.

    Its `flow_name` key when set, else the entrypoint's function name (the flows of this
    repository are named after their function, e.g. `flows_alpha.ingest:ingest` → `ingest`).
    """
    return str(dep.get("flow_name") or entrypoint.rpartition(":")[2] or "?")


def check_entrypoints(files: list[Path]) -> tuple[int, list[EntrypointProblem]]:
    """Import each deployment's entrypoint in `files`; return (how many checked, problems)."""
    problems: list[EntrypointProblem] = []
    checked = 0
    for file in files:
        try:
            doc = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            problems.append(EntrypointProblem(file, "-", "-", f"cannot read: {exc}"))
            continue
        for i, dep in enumerate(doc.get("deployments") or []):
            entrypoint = str(dep.get("entrypoint", ""))
            name = f"{_flow_name(dep, entrypoint)}/{dep.get('name', f'deployments[{i}]')}"
            checked += 1
            try:
                load_flow(entrypoint)
            except ValueError as exc:
                problems.append(EntrypointProblem(file, name, entrypoint, str(exc)))
    # Imports of user modules may have been cached half-initialised; nothing else relies on them.
    sys.modules.pop("__prefect_loader__", None)
    return checked, problems
