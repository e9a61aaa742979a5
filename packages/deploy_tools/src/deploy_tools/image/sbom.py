"""A CycloneDX 1.5 SBOM of what a venv has installed, with the hashes uv.lock records.

Made where the venv is, from what is installed, so no committed file can go stale on `uv add`
or `airnub new project`: Dockerfile.worker runs it in the image build right after the workspace
wheels are installed (the venv's own interpreter, uv.lock bind-mounted), and the Nix image's
root runs the same command on the Nix venv. Both write ``/app/sbom.cdx.json``.

    python -m deploy_tools.image.sbom --lock uv.lock [--venv DIR] [--output FILE]

- components: one per distribution of the venv's site-packages (every ``*.dist-info``): the
  PEP 503 name, the version, the purl ``pkg:pypi/<name>@<version>``. For a version uv.lock
  pins, the lock's file: the wheel whose tags are the installed ``WHEEL`` tags (its sha256 is
  also the component's hash), else the locked sdist (what a build from source started from).
  Workspace members (``editable``/``virtual`` in uv.lock) carry ``airnub:workspace:path``.
- dependencies: uv.lock's edges between installed components (markers evaluated for the
  running interpreter, extras followed from the workspace root's dependencies).
- bytes that depend only on the venv and uv.lock: no timestamp, everything sorted, keys
  sorted, the serial a UUID derived from the rest of the document.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import tomllib
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.tags import Tag, parse_tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

SBOM_NAME = "sbom.cdx.json"  # the image's, at /app/sbom.cdx.json and beside the build
# Namespace of the serial numbers (uuid5 of the document's sha256 in it). Fixed forever.
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:airnub-prefect-starter:sbom")
WORKSPACE_PROPERTY = "airnub:workspace:path"
TOOL = "airnub-deploy-tools"  # the distribution this module ships in (metadata.tools)

Bom = dict[str, Any]


@dataclass(frozen=True)
class Installed:
    """One distribution found in the venv."""

    name: str  # PEP 503 normalised
    version: str
    tags: frozenset[Tag]  # from its WHEEL file (empty: not installed from a wheel)


def site_packages(venv: Path) -> list[Path]:
    """The venv's site-packages folders (``lib/python3.*/site-packages``, ``lib64`` too)."""
    found: dict[Path, Path] = {}
    for lib in ("lib", "lib64"):
        for path in sorted(venv.glob(f"{lib}/python3*/site-packages")):
            found.setdefault(path.resolve(), path)
    if not found:
        raise FileNotFoundError(f"{venv} has no lib/python3.*/site-packages: not a venv")
    return list(found.values())


def installed(venv: Path) -> list[Installed]:
    """Every distribution of ``venv``, sorted by name and version."""
    paths = [str(p) for p in site_packages(venv)]
    out: set[Installed] = set()
    for dist in importlib.metadata.distributions(path=paths):
        name, version = dist.metadata["Name"], dist.metadata["Version"]
        if not name or not version:
            continue
        wheel = dist.read_text("WHEEL") or ""
        tags = frozenset(
            tag
            for line in wheel.splitlines()
            if line.startswith("Tag:")
            for tag in parse_tag(line.split(":", 1)[1].strip())
        )
        out.add(Installed(str(canonicalize_name(name)), version, tags))
    return sorted(out, key=lambda d: (d.name, d.version))


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _file_name(entry: dict[str, Any]) -> str:
    where = str(entry.get("url") or entry.get("path") or entry.get("filename") or "")
    return urllib.parse.unquote(where.rsplit("/", 1)[-1])


def _reference(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A CycloneDX ``distribution`` reference for a uv.lock wheel/sdist entry with a hash."""
    algo, _, digest = str(entry.get("hash", "")).partition(":")
    if algo != "sha256" or not digest:
        return None
    url = str(entry.get("url") or entry.get("path") or entry.get("filename"))
    return {"type": "distribution", "url": url, "hashes": [{"alg": "SHA-256", "content": digest}]}


def _locked_file(dist: Installed, package: dict[str, Any]) -> tuple[list[Bom], bool]:
    """The lock's reference(s) for what ``dist`` was installed from; True if it is the exact
    wheel (matched by its tags)."""
    for wheel in package.get("wheels", []):
        try:
            _, _, _, tags = parse_wheel_filename(_file_name(wheel))
        except InvalidWheelFilename:
            continue
        if dist.tags and tags == dist.tags and (ref := _reference(wheel)) is not None:
            return [ref], True
    sdist = package.get("sdist")
    ref = _reference(sdist) if isinstance(sdist, dict) else None
    return ([ref] if ref else []), False


def _is_member(package: dict[str, Any]) -> bool:
    source = package.get("source", {})
    return "editable" in source or "virtual" in source


def _is_root(package: dict[str, Any]) -> bool:
    source = package.get("source", {})
    return "." in (source.get("editable"), source.get("virtual"))


def _name(entry: dict[str, Any]) -> str:
    """The PEP 503 name of a uv.lock package or dependency entry."""
    return str(canonicalize_name(str(entry["name"])))


def _purl(name: str, version: str) -> str:
    return f"pkg:pypi/{name}@{version}"


def _applies(dep: dict[str, Any]) -> bool:
    """Whether a uv.lock dependency's marker holds here (one this packaging cannot read is
    followed: an extra edge, never a missing one)."""
    marker = dep.get("marker")
    if marker is None:
        return True
    try:
        return Marker(str(marker)).evaluate()
    except InvalidMarker:
        return True


def _edges(
    dists: dict[str, Installed], packages: dict[str, dict[str, Any]], root: dict[str, Any] | None
) -> dict[str, set[str]]:
    """name -> names it depends on, both installed; extras requested anywhere are followed."""
    extras: dict[str, set[str]] = {name: set() for name in dists}
    edges: dict[str, set[str]] = {name: set() for name in dists}
    for dep in (root or {}).get("dependencies", []):
        if (name := _name(dep)) in dists and _applies(dep):
            extras[name] |= set(dep.get("extra", []))
    changed = True
    while changed:
        changed = False
        for name in sorted(dists):
            package = packages.get(name)
            if package is None:
                continue
            optional = package.get("optional-dependencies", {})
            deps = list(package.get("dependencies", []))
            for extra in sorted(extras[name]):
                deps += optional.get(extra, [])
            for dep in deps:
                target = _name(dep)
                if target not in dists or target == name or not _applies(dep):
                    continue
                edges[name].add(target)
                new = set(dep.get("extra", [])) - extras[target]
                if new:
                    extras[target] |= new
                    changed = True
    return edges


def build(dists: Iterable[Installed], lock: dict[str, Any], tool_version: str) -> Bom:
    """The SBOM (without its serial number) of ``dists`` against the parsed uv.lock ``lock``."""
    by_name = {d.name: d for d in dists}
    lock_packages = lock.get("package", [])
    root = next((p for p in lock_packages if _is_root(p)), None)
    # The lock's entry for the version installed (a name can be locked at several versions).
    packages = {
        name: p
        for p in lock_packages
        if (name := _name(p)) in by_name
        and _same_version(str(p.get("version", "")), by_name[name].version)
    }
    components = []
    for name, dist in sorted(by_name.items()):
        component: Bom = {
            "type": "library",
            "bom-ref": _purl(name, dist.version),
            "name": name,
            "version": dist.version,
            "purl": _purl(name, dist.version),
        }
        package = packages.get(name)
        if package is not None and _is_member(package):
            path = package["source"].get("editable") or package["source"].get("virtual")
            component["properties"] = [{"name": WORKSPACE_PROPERTY, "value": str(path)}]
        elif package is not None:
            refs, exact = _locked_file(dist, package)
            if refs:
                component["externalReferences"] = refs
            if exact:
                component["hashes"] = refs[0]["hashes"]
        components.append(component)
    edges = _edges(by_name, packages, root)
    dependencies = [
        {"ref": _purl(name, by_name[name].version),
         "dependsOn": sorted(_purl(t, by_name[t].version) for t in targets)}
        for name, targets in sorted(edges.items())
    ]  # fmt: skip
    metadata: Bom = {
        "tools": {
            "components": [
                {"type": "application", "name": TOOL, "version": tool_version,
                 "description": "deploy_tools.image.sbom: the installed venv and uv.lock"}
            ]
        }
    }  # fmt: skip
    if root is not None:
        root_name, root_version = _name(root), str(root.get("version", "0"))
        ref = f"{root_name}@{root_version}"
        metadata["component"] = {
            "type": "application", "bom-ref": ref, "name": root_name, "version": root_version
        }  # fmt: skip
        direct = {canonicalize_name(d["name"]) for d in root.get("dependencies", []) if _applies(d)}
        members = {n for n, p in packages.items() if _is_member(p) and not _is_root(p)}
        on = sorted(_purl(n, by_name[n].version) for n in (direct | members) if n in by_name)
        dependencies.append({"ref": ref, "dependsOn": on})
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": sorted(dependencies, key=lambda d: d["ref"]),
    }


def render(bom: Bom) -> bytes:
    """Stable JSON: sorted keys, two-space indent, UTF-8, one trailing newline."""
    return (json.dumps(bom, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def with_serial(bom: Bom) -> Bom:
    """``bom`` with ``serialNumber`` = ``urn:uuid:<uuid5 of the sha256 of the rest>``."""
    rest = {k: v for k, v in bom.items() if k != "serialNumber"}
    digest = hashlib.sha256(render(rest)).hexdigest()
    return {**rest, "serialNumber": f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, digest)}"}


def _tool_version() -> str:
    try:
        return importlib.metadata.version(TOOL)
    except importlib.metadata.PackageNotFoundError:
        return "0"


def generate(venv: Path, lock: Path) -> bytes:
    """The SBOM bytes of what ``venv`` has installed, with ``lock``'s (a uv.lock) hashes."""
    data = tomllib.loads(lock.read_text())
    return render(with_serial(build(installed(venv), data, _tool_version())))


def main(argv: list[str] | None = None) -> int:
    """CLI: write the SBOM of ``--venv`` (default: this interpreter's) to ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lock", type=Path, required=True, help="the uv.lock it was locked from")
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix),
                        help="the venv (default: this interpreter's, %(default)s)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=None, help="default: standard output")
    args = parser.parse_args(argv)
    try:
        data = generate(args.venv, args.lock)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.buffer.write(data)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
