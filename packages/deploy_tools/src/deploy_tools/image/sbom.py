"""A CycloneDX 1.5 SBOM of the image's Python set, from uv.lock, byte-identical across builds.

Two files:
- ``uv.lock.cdx.json``, committed beside ``uv.lock``: the whole locked runtime set (every
  platform), made by ``uv export --format cyclonedx1.5`` (a preview feature of uv): the
  workspace root's runtime dependencies (``--no-dev``, the root's extras such as
  ``airnub-pipeline-core[aws]``) plus the three workspace packages. uv writes a wall-clock
  ``metadata.timestamp`` and a random ``serialNumber``; here there is no timestamp, the serial
  is a UUID derived from uv.lock's sha256, and every list and key is sorted.
  ``hatch run image:sbom`` writes it; ``image build`` rewrites a stale one and says so (the
  Nix build cannot: it takes the file as committed); a unit test refuses a stale one in CI.
- the image's ``/app/sbom.cdx.json``: that file cut to one interpreter (components whose
  environment marker is false for it, ``pywin32``, …, dropped), timestamped with
  SOURCE_DATE_EPOCH. ``image build`` probes the base image's interpreter; the Nix build runs
  ``python -m deploy_tools.image.sbom image`` with the image's own venv, because Nix has no uv
  of the pinned version. Both start from the same committed bytes.

    python -m deploy_tools.image.sbom lock [--project .] [--check]
    python -m deploy_tools.image.sbom image --input uv.lock.cdx.json --output F [--epoch N]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.markers import Marker

from deploy_tools.image.wheelhouse import Target, current_target

SBOM_NAME = "sbom.cdx.json"  # the image's, beside the build and at /app/sbom.cdx.json
LOCK_SBOM = "uv.lock.cdx.json"  # the lock's whole set, committed beside uv.lock
REFRESH = "run `hatch run image:sbom` and commit it with uv.lock"
# The exact flags: the root (virtual) project's runtime set, as wheelhouse.export_lock, but
# with the workspace members listed as components.
UV_EXPORT = ("uv", "export", "--format", "cyclonedx1.5", "--frozen", "--no-dev",
             "--preview-features", "sbom-export")  # fmt: skip
# Namespace of the serial numbers (uuid5 of uv.lock's sha256 in it). Fixed forever.
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:airnub-prefect-starter:sbom")
MARKER_PROPERTY = "uv:package:marker"

Bom = dict[str, Any]


class StaleSbom(RuntimeError):
    """uv.lock.cdx.json is missing or no longer describes uv.lock."""


def export_cyclonedx(project: Path) -> Bom:
    """uv's CycloneDX export of ``project``'s lock, as parsed JSON (uv.lock is not changed)."""
    proc = subprocess.run([*UV_EXPORT], cwd=project, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(UV_EXPORT)}` failed ({proc.returncode}); it needs a uv "
            f"with the sbom-export preview feature (tested with uv 0.13.9):\n{proc.stderr[-2000:]}"
        )
    bom: Bom = json.loads(proc.stdout)
    return bom


def lock_sha256(project: Path) -> str:
    """sha256 of ``project/uv.lock``'s bytes."""
    return hashlib.sha256((project / "uv.lock").read_bytes()).hexdigest()


def serial_number(lock_id: str, target_key: str | None = None) -> str:
    """``urn:uuid:<uuid5>`` of ``lock_id`` (uv.lock's sha256 for the lock's SBOM; that SBOM's
    serial for an image's), and of the target's key when cut for one."""
    name = lock_id if target_key is None else f"{lock_id}/{target_key}"
    return f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, name)}"


def _marker(component: Bom) -> str | None:
    for prop in component.get("properties", []):
        if prop.get("name") == MARKER_PROPERTY:
            return str(prop["value"])
    return None


def _for_target(bom: Bom, target: Target) -> None:
    """Drop the components (and their dependency edges) whose marker is false for ``target``."""
    env = dict(target.markers)
    dropped = {
        c["bom-ref"]
        for c in bom.get("components", [])
        if (m := _marker(c)) is not None and not Marker(m).evaluate(env)
    }
    bom["components"] = [c for c in bom.get("components", []) if c["bom-ref"] not in dropped]
    deps = []
    for dep in bom.get("dependencies", []):
        if dep["ref"] in dropped:
            continue
        if "dependsOn" in dep:
            dep["dependsOn"] = [r for r in dep["dependsOn"] if r not in dropped]
        deps.append(dep)
    bom["dependencies"] = deps


def _sort_component(component: Bom) -> Bom:
    refs = component.get("externalReferences")
    if refs is not None:
        for ref in refs:
            if "hashes" in ref:
                ref["hashes"] = sorted(ref["hashes"], key=lambda h: (h["alg"], h["content"]))
        component["externalReferences"] = sorted(refs, key=lambda r: (r["type"], r["url"]))
    if "properties" in component:
        component["properties"] = sorted(
            component["properties"], key=lambda p: (p["name"], p["value"])
        )
    return component


def normalise(
    bom: Bom, *, serial: str, epoch: int | None = None, target: Target | None = None
) -> Bom:
    """A copy of ``bom`` that depends only on its inputs (lock, target, epoch), not on the clock.

    ``metadata.timestamp`` becomes ``epoch`` (UTC, seconds) or is dropped; ``serialNumber`` is
    ``serial``; components, their references, hashes and properties, the tools and the
    dependency graph are sorted. Keys are sorted when rendered (:func:`render`).
    """
    out = copy.deepcopy(bom)
    if target is not None:
        _for_target(out, target)
    out["serialNumber"] = serial
    meta = out.setdefault("metadata", {})
    meta.pop("timestamp", None)
    if epoch is not None:
        meta["timestamp"] = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(meta.get("tools"), list):
        meta["tools"] = sorted(
            meta["tools"], key=lambda t: (t.get("name", ""), t.get("version", ""))
        )
    if "component" in meta:
        _sort_component(meta["component"])
    out["components"] = sorted(
        (_sort_component(c) for c in out.get("components", [])),
        key=lambda c: (c["name"], c.get("version", ""), c["bom-ref"]),
    )
    deps = []
    for dep in out.get("dependencies", []):
        if "dependsOn" in dep:
            dep["dependsOn"] = sorted(dep["dependsOn"])
        deps.append(dep)
    out["dependencies"] = sorted(deps, key=lambda d: d["ref"])
    return out


def render(bom: Bom) -> bytes:
    """Stable JSON: sorted keys, two-space indent, UTF-8, one trailing newline."""
    return (json.dumps(bom, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def lock_sbom(project: Path) -> bytes:
    """What ``uv.lock.cdx.json`` must hold: the whole locked runtime set, no timestamp."""
    return render(normalise(export_cyclonedx(project), serial=serial_number(lock_sha256(project))))


def committed(project: Path) -> bytes:
    """``project``'s ``uv.lock.cdx.json``, checked against ``uv.lock``: :class:`StaleSbom` if not."""
    path = project / LOCK_SBOM
    if not path.is_file():
        raise StaleSbom(f"{path} is missing; {REFRESH}")
    data = path.read_bytes()
    if data != lock_sbom(project):
        raise StaleSbom(f"{path} does not describe {project / 'uv.lock'} any more; {REFRESH}")
    return data


def refresh(project: Path) -> tuple[bytes, bool]:
    """:func:`lock_sbom`'s bytes (one export), written to a missing or stale ``uv.lock.cdx.json``;
    and whether it was rewritten."""
    data = lock_sbom(project)
    path = project / LOCK_SBOM
    if path.is_file() and path.read_bytes() == data:
        return data, False
    path.write_bytes(data)
    return data, True


def for_target(lock_bom: bytes, target: Target, epoch: int | None = None) -> bytes:
    """The image's SBOM: ``lock_bom`` (a ``uv.lock.cdx.json``) cut to what ``target`` installs.

    Its serial is derived from the lock's and the target's key, its timestamp is ``epoch``.
    """
    bom: Bom = json.loads(lock_bom)
    serial = serial_number(str(bom["serialNumber"]), target.key)
    return render(normalise(bom, serial=serial, epoch=epoch, target=target))


def generate(project: Path, *, target: Target, epoch: int | None = None) -> bytes:
    """The image's SBOM for ``target``, from ``project``'s checked ``uv.lock.cdx.json``."""
    return for_target(committed(project), target, epoch)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``lock`` writes (``--check``: checks) uv.lock.cdx.json; ``image`` cuts it for this
    interpreter (the Nix build runs that with the image's own venv)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    lock = sub.add_parser("lock", help=f"write {LOCK_SBOM} from uv.lock (uv export)")
    lock.add_argument("--project", type=Path, default=Path())
    lock.add_argument("--check", action="store_true", help="only check it; exit 1 when stale")
    image = sub.add_parser("image", help="the SBOM of what this interpreter installs")
    image.add_argument("--input", type=Path, required=True, help=f"a {LOCK_SBOM}")
    image.add_argument("--output", type=Path, required=True)
    image.add_argument("--epoch", type=int, default=None,
                       help="metadata.timestamp (default: $SOURCE_DATE_EPOCH, else none)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "lock":
        project = args.project.resolve()
        try:
            if args.check:
                committed(project)
                print(f"{project / LOCK_SBOM} describes uv.lock", file=sys.stderr)
                return 0
            refresh(project)
        except RuntimeError as exc:  # StaleSbom, or uv export failed
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {project / LOCK_SBOM}", file=sys.stderr)
        return 0
    env_epoch = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = args.epoch if args.epoch is not None else (int(env_epoch) if env_epoch else None)
    data = for_target(args.input.read_bytes(), current_target(), epoch)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
