"""The import gate inside the built image: what will run there is checked there.

The host's gate (`deploy_tools.setup.entrypoints`) proves the code imports in the dev env; only
the image proves it was installed into the image. `image_targets` lists, per project, every
deployment entrypoint of its deploy files and its `demo_data` module; `check_in_image` imports
them all in one throwaway container of the image (no network) and returns one line per failure,
naming the project, the module and the file that uses it.

Inside the container: ``python -m deploy_tools.image.gate '<targets as JSON>'`` prints the
failures as JSON (a list of `{"target", "error"}`).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from deploy_tools.settings import AirnubSettings


@dataclass(frozen=True)
class ImportTarget:
    """One thing that must import in the image: a flow entrypoint or a module."""

    project: str
    kind: str  # "flow" (`module:flow`) or "module"
    target: str
    where: str  # the file (or pyproject key) that names it


def _entrypoints(path: Path) -> list[str]:
    """The entrypoints of `path` that the image itself must hold.

    A file whose pull steps bring the code at run time (anything but `set_working_directory`,
    e.g. prefect-aws' `pull_from_s3` or `git_clone`) has its file-path entrypoints (`x.py:flow`)
    checked by the host's gate only: that code is not in the image by design. Module paths
    are always checked (their packages must be installed); so is a file path when the code is
    not pulled (it would fail in every run).
    """
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []  # the host gate and the file checks report an unreadable file
    steps = [next(iter(step), "") for step in doc.get("pull") or [] if isinstance(step, dict)]
    pulls_code = any(not name.endswith(".set_working_directory") for name in steps)
    entrypoints = [str(d.get("entrypoint", "")) for d in doc.get("deployments") or []]
    return [e for e in entrypoints if not (pulls_code and ".py:" in e)]


def image_targets(
    settings: AirnubSettings, files: dict[str, list[Path]] | None = None
) -> list[ImportTarget]:
    """Every project's entrypoints (of `files[project]`, default its local deployment file)
    and `demo_data` module."""
    targets: list[ImportTarget] = []
    for p in settings.projects:
        for path in (files or {}).get(p.name, [p.local_deploy_file]):
            where = settings.relative(path)
            targets += [ImportTarget(p.name, "flow", e, where) for e in _entrypoints(path)]
        if p.demo_data:
            where = f"{settings.relative(p.member_dir)}/pyproject.toml demo_data"
            targets.append(ImportTarget(p.name, "module", p.demo_data, where))
    return targets


def check_in_image(image: str, targets: list[ImportTarget]) -> list[str]:
    """Import `targets` in a container of `image`; one line per failure (empty: all import).

    Raises:
        RuntimeError: the container could not run the gate at all (its output is quoted).
    """
    if not targets:
        return []
    payload = json.dumps([{"kind": t.kind, "target": t.target} for t in targets])
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image,
         "-m", "deploy_tools.image.gate", payload],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        failed = {f["target"]: f["error"] for f in json.loads(proc.stdout.strip().splitlines()[-1])}
    except (IndexError, ValueError, KeyError, TypeError):
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"the import gate did not run in {image}:\n{tail}") from None
    return [
        f"project {t.project}: {t.target} ({t.where}) does not import in {image}: "
        f"{failed[t.target]}"
        for t in targets
        if t.target in failed
    ]


def _import(kind: str, target: str) -> None:
    if kind == "module":
        importlib.import_module(target)
    else:
        from deploy_tools.setup.entrypoints import load_flow

        load_flow(target)


def main(argv: list[str]) -> int:
    """In the image: import each target of the JSON list `argv[0]`, print the failures."""
    failures = []
    for item in json.loads(argv[0]):
        try:
            _import(item["kind"], item["target"])
        except Exception as exc:  # any import-time failure is reported, not raised
            cause = exc.__cause__ or exc
            failures.append({"target": item["target"], "error": f"{type(cause).__name__}: {cause}"})
    print(json.dumps(failures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
