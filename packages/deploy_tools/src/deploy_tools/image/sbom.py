"""A CycloneDX 1.5 SBOM of the image's Python set, from uv.lock, byte-identical across runs.

``uv export --format cyclonedx1.5`` (a preview feature of uv) lists the same set the wheelhouse
exports for the image: the workspace root's runtime dependencies (``--no-dev``, the root's extras
such as ``airnub-pipeline-core[aws]``) plus the three workspace packages. uv writes a wall-clock
``metadata.timestamp`` and a random ``serialNumber``; here the timestamp is SOURCE_DATE_EPOCH (or
dropped), the serial is a UUID derived from uv.lock's sha256, and every list and key is sorted.

With a :class:`~deploy_tools.image.wheelhouse.Target` the components whose environment marker
does not hold for the image's interpreter (``pywin32``, …) are dropped: the SBOM lists what is
installed in the image. Without one it lists the whole locked set (every platform).

    python -m deploy_tools.image.sbom [--project .] [--output sbom.cdx.json] [--epoch N]
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

from deploy_tools.image.wheelhouse import Target

SBOM_NAME = "sbom.cdx.json"
# The exact flags: the root (virtual) project's runtime set, as wheelhouse.export_lock, but
# with the workspace members listed as components.
UV_EXPORT = ("uv", "export", "--format", "cyclonedx1.5", "--frozen", "--no-dev",
             "--preview-features", "sbom-export")  # fmt: skip
# Namespace of the serial numbers (uuid5 of uv.lock's sha256 in it). Fixed forever.
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:airnub-prefect-starter:sbom")
MARKER_PROPERTY = "uv:package:marker"

Bom = dict[str, Any]


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


def serial_number(lock_digest: str, target_key: str | None = None) -> str:
    """``urn:uuid:<uuid5>`` of the lock's sha256 (and of the target, when filtered for one)."""
    name = lock_digest if target_key is None else f"{lock_digest}/{target_key}"
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


def generate(project: Path, *, target: Target | None = None, epoch: int | None = None) -> bytes:
    """The normalised SBOM of ``project``'s locked runtime set (for ``target`` if given)."""
    bom = export_cyclonedx(project)
    serial = serial_number(lock_sha256(project), None if target is None else target.key)
    return render(normalise(bom, serial=serial, epoch=epoch, target=target))


def write(
    project: Path, dest: Path, *, target: Target | None = None, epoch: int | None = None
) -> Path:
    """Write :func:`generate`'s bytes to ``dest`` (its folder is created) and return ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(generate(project, target=target, epoch=epoch))
    return dest


def main(argv: list[str] | None = None) -> int:
    """CLI: the whole locked set (no target), timestamp from --epoch or $SOURCE_DATE_EPOCH."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--project", type=Path, default=Path())
    parser.add_argument("--output", type=Path, default=None, help="file (default: stdout)")
    parser.add_argument("--epoch", type=int, default=None,
                        help="metadata.timestamp (default: $SOURCE_DATE_EPOCH, else none)")  # fmt: skip
    args = parser.parse_args(argv)
    env_epoch = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = args.epoch if args.epoch is not None else (int(env_epoch) if env_epoch else None)
    data = generate(args.project.resolve(), epoch=epoch)
    if args.output is None:
        sys.stdout.buffer.write(data)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
