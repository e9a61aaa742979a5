#!/usr/bin/env python3
"""Compare the workspace in two worker images, e.g. the Docker-built and the Nix-built one.

    python3 ci/compare_images.py A B [--workspace NAME ...]

A and B are each an image archive (`docker save`, `skopeo copy … docker-archive:…` or
`oci-archive:…`, buildx `--output type=oci`), or `INSPECT.json,EXPORT.tar`: the output of
`docker image inspect` and a `docker export` of a container created from that image.

Compared, reading the archives only (stdlib, nothing is run):
- the config: Entrypoint, Cmd, User, WorkingDir, Env, Labels;
- the Python distributions of the venv ($VIRTUAL_ENV of the config): names and versions, from
  each `*.dist-info/METADATA`;
- each image's SBOM (`$WORKDIR/sbom.cdx.json`) against its own venv: the same names and
  versions, no more, no fewer (the SBOMs themselves may differ: each is cut to its interpreter);
- the files of the workspace distributions (the top-level entries their RECORD names, walked in
  the image; `__pycache__` and `.pyc` left out: both builds compile differently) and their
  console scripts in `$VIRTUAL_ENV/bin`. Which distributions are the workspace's is read from
  the SBOMs (components with the `airnub:workspace:path` property, in either image), unless
  `--workspace` names them;
- the working directory, $HOME and the entrypoint: every path under them with its type, owner
  and, for files, whether it is executable. Modes are not compared: the Nix store makes every
  file read-only (0444/0555) where Docker has 0644/0755.

Symbolic links are followed inside the image (the Nix venv links into /nix/store). Prints every
difference; exit status 0 when there is none, 1 when there are some, 2 when an input cannot be
read.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import sys
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import IO, Any

CONFIG_KEYS = ("Entrypoint", "Cmd", "User", "WorkingDir", "Env", "Labels")
# Small files read into memory: what the package and script comparison needs.
KEEP = re.compile(r"\.dist-info/(METADATA|RECORD|entry_points\.txt)$|(^|/)sbom\.cdx\.json$")
SBOM = "sbom.cdx.json"  # in the working directory: the CycloneDX SBOM of the venv
WORKSPACE_PROPERTY = "airnub:workspace:path"  # on an SBOM component: a workspace member
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


class InputError(Exception):
    """An input that is not a readable image."""


@dataclass
class Node:
    """One path of the image's merged filesystem."""

    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    mode: int
    uid: int
    gid: int
    link: str = ""
    data: bytes | None = None


@dataclass
class Image:
    """An image's config and its filesystem after every layer (whiteouts applied)."""

    config: dict[str, Any]
    files: dict[str, Node] = field(default_factory=dict)
    _children: dict[str, list[str]] | None = None

    # ---- building -------------------------------------------------------------------------
    def apply_layer(self, layer: IO[bytes]) -> None:
        """Apply one (possibly compressed) layer tar, OCI whiteouts included."""
        self._children = None
        try:
            with tarfile.open(fileobj=layer, mode="r:*") as tar:
                self._apply(tar)
        except tarfile.TarError as exc:
            raise InputError(f"unreadable layer (zstd is not supported): {exc}") from exc

    def _apply(self, tar: tarfile.TarFile) -> None:
        for member in tar:
            name = _clean(member.name)
            if not name:
                continue
            parent, base = posixpath.split(name)
            if base == ".wh..wh..opq":
                self._remove_below(parent)
                continue
            if base.startswith(".wh."):
                target = posixpath.join(parent, base[4:])
                self.files.pop(target, None)
                self._remove_below(target)
                continue
            previous = self.files.get(name)
            if previous is not None and previous.kind == "dir" and not member.isdir():
                self._remove_below(name)
            data = None
            if member.isfile() and KEEP.search(name):
                fh = tar.extractfile(member)
                data = fh.read() if fh else b""
            kind = (
                "file" if member.isfile()
                else "dir" if member.isdir()
                else "symlink" if member.issym()
                else "hardlink" if member.islnk()
                else "other"
            )  # fmt: skip
            link = _clean(member.linkname) if member.islnk() else member.linkname
            self.files[name] = Node(kind, member.mode, member.uid, member.gid, link, data)
            # Folders a tar names only through their contents (root-owned, as tar makes them).
            while parent and parent not in self.files:
                self.files[parent] = Node("dir", 0o755, 0, 0)
                parent = posixpath.dirname(parent)

    def _remove_below(self, folder: str) -> None:
        prefix = folder + "/" if folder else ""
        for path in [p for p in self.files if p.startswith(prefix)]:
            del self.files[path]

    # ---- reading --------------------------------------------------------------------------
    def children(self, folder: str) -> list[str]:
        """Names directly inside `folder` (a resolved path, "" for /)."""
        if self._children is None:
            index: dict[str, list[str]] = {}
            for path in self.files:
                parent, base = posixpath.split(path)
                index.setdefault(parent, []).append(base)
            self._children = {k: sorted(v) for k, v in index.items()}
        return self._children.get(folder, [])

    def resolve(self, path: str, depth: int = 0) -> str:
        """`path` with every symbolic link in it followed (inside the image)."""
        if depth > 40:
            raise InputError(f"too many levels of symbolic links at {path}")
        parts = [p for p in _clean(path).split("/") if p]
        current = ""
        for i, part in enumerate(parts):
            candidate = posixpath.join(current, part) if current else part
            node = self.files.get(candidate)
            if node is not None and node.kind == "symlink":
                target = node.link
                base = "" if target.startswith("/") else current
                rest = "/".join([posixpath.join(base, target), *parts[i + 1 :]])
                return self.resolve(posixpath.normpath("/" + rest), depth + 1)
            current = candidate
        return current

    def node(self, path: str) -> Node | None:
        """The node at `path` after following links (hard links to their target)."""
        found = self.files.get(self.resolve(path))
        if found is not None and found.kind == "hardlink":
            return self.files.get(found.link)
        return found

    def walk(self, top: str) -> Iterator[tuple[str, Node]]:
        """(path relative to `top`, node) for `top`'s tree; links are listed, not followed."""
        root = self.resolve(top)
        stack = [""]
        while stack:
            rel = stack.pop()
            full = posixpath.join(root, rel) if rel else root
            node = self.files.get(full)
            if node is None:
                continue
            yield rel, node
            if node.kind == "dir":
                stack.extend(posixpath.join(rel, c) if rel else c for c in self.children(full))

    def env(self) -> dict[str, str]:
        """The config's Env as a mapping."""
        return dict(item.split("=", 1) for item in self.config.get("Env") or [])


def _clean(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return "" if name == "." else name


# ---- loading ------------------------------------------------------------------------------
def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    for candidate in (name, _clean(name), "./" + _clean(name)):
        try:
            fh = tar.extractfile(candidate)
        except KeyError:
            continue
        if fh is not None:
            return fh
    raise InputError(f"{name} is missing from the archive")


def _json(tar: tarfile.TarFile, name: str) -> Any:
    return json.load(_member(tar, name))


def _blob(digest: str) -> str:
    algo, hexdigest = digest.split(":", 1)
    return f"blobs/{algo}/{hexdigest}"


def load_archive(path: Path) -> Image:
    """An image archive: docker-archive (manifest.json) or OCI layout (index.json)."""
    try:
        with tarfile.open(path) as tar:
            return _load_archive(path, tar)
    except tarfile.TarError as exc:
        raise InputError(f"{path}: not a tar archive ({exc})") from exc


def _load_archive(path: Path, tar: tarfile.TarFile) -> Image:
    names = set(tar.getnames())
    if "manifest.json" in names:
        entry = _json(tar, "manifest.json")[0]
        config = _json(tar, entry["Config"])
        layers = list(entry["Layers"])
    elif "index.json" in names:
        desc = _json(tar, "index.json")["manifests"][0]
        while desc.get("mediaType") in _INDEX_TYPES:
            sub = _json(tar, _blob(desc["digest"]))["manifests"]
            desc = next((m for m in sub if m.get("platform", {}).get("os") != "unknown"), sub[0])
        manifest = _json(tar, _blob(desc["digest"]))
        config = _json(tar, _blob(manifest["config"]["digest"]))
        layers = [_blob(layer["digest"]) for layer in manifest["layers"]]
    else:
        raise InputError(f"{path}: neither manifest.json nor index.json inside")
    image = Image(dict(config.get("config") or {}))
    for layer in layers:
        image.apply_layer(_member(tar, layer))
    return image


def load_export(inspect: Path, export: Path) -> Image:
    """`docker image inspect` output (a list or one object) and a `docker export` tar."""
    data = json.loads(inspect.read_text())
    if isinstance(data, list):
        data = data[0]
    image = Image(dict(data.get("Config") or data.get("config") or {}))
    with export.open("rb") as fh:
        image.apply_layer(fh)
    return image


def load(spec: str) -> Image:
    """`ARCHIVE` or `INSPECT.json,EXPORT.tar`."""
    if "," in spec:
        inspect, export = spec.split(",", 1)
        return load_export(Path(inspect), Path(export))
    return load_archive(Path(spec))


# ---- what is compared ---------------------------------------------------------------------
def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Distribution:
    """One installed distribution of the venv."""

    name: str
    version: str
    record: list[str]
    scripts: list[str]


def site_packages(image: Image) -> str | None:
    """The venv's resolved site-packages folder ($VIRTUAL_ENV/lib/python3.*/site-packages)."""
    venv = image.env().get("VIRTUAL_ENV")
    if not venv:
        return None
    lib = image.resolve(posixpath.join(venv, "lib"))
    for name in image.children(lib):
        if re.fullmatch(r"python3\.\d+", name):
            site = image.resolve(posixpath.join(lib, name, "site-packages"))
            if site in image.files:
                return site
    return None


def distributions(image: Image) -> dict[str, Distribution]:
    """Canonical name -> distribution, for every *.dist-info of the venv."""
    site = site_packages(image)
    found: dict[str, Distribution] = {}
    if site is None:
        return found
    for entry in image.children(site):
        if not entry.endswith(".dist-info"):
            continue
        folder = posixpath.join(site, entry)
        meta = image.node(posixpath.join(folder, "METADATA"))
        if meta is None or meta.data is None:
            continue
        headers = HeaderParser().parsestr(meta.data.decode("utf-8", "replace"))
        record = image.node(posixpath.join(folder, "RECORD"))
        entry_points = image.node(posixpath.join(folder, "entry_points.txt"))
        dist = Distribution(
            headers.get("Name", entry),
            headers.get("Version", "?"),
            _record_paths(record.data if record and record.data else b""),
            _console_scripts(entry_points.data if entry_points and entry_points.data else b""),
        )
        found[canonical(dist.name)] = dist
    return found


def _record_paths(data: bytes) -> list[str]:
    return [line.split(",", 1)[0] for line in data.decode("utf-8", "replace").splitlines() if line]


def _console_scripts(data: bytes) -> list[str]:
    scripts: list[str] = []
    section = ""
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == "console_scripts" and "=" in line:
            scripts.append(line.split("=", 1)[0].strip())
    return sorted(scripts)


def workspace_files(image: Image, dist: Distribution) -> set[str]:
    """Files of the distribution's top-level entries, walked in the image (links followed)."""
    site = site_packages(image)
    if site is None:
        return set()
    tops = {
        path.split("/", 1)[0]
        for path in dist.record
        if path and not path.startswith("..") and ".dist-info" not in path.split("/", 1)[0]
    }
    files: set[str] = set()
    for top in sorted(tops):
        _collect(image, posixpath.join(site, top), top, files, 0)
    return files


def _collect(image: Image, path: str, rel: str, out: set[str], depth: int) -> None:
    if depth > 64 or "__pycache__" in rel.split("/") or rel.endswith(".pyc"):
        return
    resolved = image.resolve(path)
    node = image.files.get(resolved)
    if node is None:
        return
    if node.kind == "dir":
        for child in image.children(resolved):
            _collect(image, posixpath.join(resolved, child), f"{rel}/{child}", out, depth + 1)
    else:
        out.add(rel)


def sbom_path(image: Image) -> str:
    """Where the image's SBOM is: $WORKDIR/sbom.cdx.json."""
    return posixpath.join(image.config.get("WorkingDir") or "/", SBOM)


def read_sbom(image: Image) -> tuple[dict[str, str], set[str]]:
    """The image's SBOM: canonical name -> version of each component, and the names it marks
    as workspace members. InputError when there is no SBOM or it is not one."""
    path = sbom_path(image)
    node = image.node(path)
    if node is None or node.data is None:
        raise InputError(f"no {path}")
    try:
        components = json.loads(node.data)["components"]
        listed = {canonical(c["name"]): c["version"] for c in components}
        members = {
            canonical(c["name"])
            for c in components
            if any(p.get("name") == WORKSPACE_PROPERTY for p in c.get("properties") or [])
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a CycloneDX SBOM ({exc!r})") from exc
    return listed, members


def workspace_members(image: Image) -> set[str]:
    """Canonical names the image's SBOM marks as workspace members (none without an SBOM)."""
    try:
        return read_sbom(image)[1]
    except InputError:
        return set()


def sbom_problems(side: str, image: Image, dists: dict[str, Distribution]) -> list[str]:
    """Where the image's SBOM ($WORKDIR/sbom.cdx.json) and its venv disagree, or no SBOM."""
    try:
        listed = read_sbom(image)[0]
    except InputError as exc:
        return [f"{side}: {exc}"]
    installed = {name: d.version for name, d in dists.items()}
    return [
        f"{side}: {name}: SBOM {_side(listed.get(name))} | installed {_side(installed.get(name))}"
        for name in sorted(listed.keys() | installed.keys())
        if listed.get(name) != installed.get(name)
    ]


def tree(image: Image, top: str) -> dict[str, str]:
    """Path (relative to `top`) -> "type uid:gid[ exec]" for every path under `top`."""
    described: dict[str, str] = {}
    for rel, node in image.walk(top):
        text = f"{node.kind} {node.uid}:{node.gid}"
        if node.kind == "file" and node.mode & 0o111:
            text += " exec"
        described[rel or "."] = text
    return described


# ---- the comparison -----------------------------------------------------------------------
def _side(value: object) -> str:
    return "-" if value is None else repr(value) if not isinstance(value, str) else value


def _diff_maps(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        f"{key}: A {_side(a.get(key))} | B {_side(b.get(key))}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key) != b.get(key)
    ]


def derive_workspace(a: Image, b: Image) -> list[str]:
    """The workspace distributions: those either image's SBOM marks as members, sorted."""
    return sorted(workspace_members(a) | workspace_members(b))


def compare(
    a: Image, b: Image, workspace: Iterable[str] | None = None
) -> list[tuple[str, list[str]]]:
    """Sections of differences, each (title, lines); empty sections are left out.

    ``workspace``: the distributions whose files are compared (None: :func:`derive_workspace`).
    """
    sections: list[tuple[str, list[str]]] = []
    names = sorted(map(canonical, derive_workspace(a, b) if workspace is None else workspace))

    config: list[str] = []
    for key in CONFIG_KEYS:
        va, vb = a.config.get(key), b.config.get(key)
        if key == "Env":
            config += [f"Env {line}" for line in _diff_maps(a.env(), b.env())]
        elif key == "Labels":
            config += [f"Labels {line}" for line in _diff_maps(va or {}, vb or {})]
        elif va != vb:
            config.append(f"{key}: A {_side(va)} | B {_side(vb)}")
    sections.append(("config", config))

    dists_a, dists_b = distributions(a), distributions(b)
    problems = [
        f"{side}: no venv site-packages found"
        for side, d in (("A", dists_a), ("B", dists_b))
        if not d
    ]
    versions_a = {name: d.version for name, d in dists_a.items()}
    versions_b = {name: d.version for name, d in dists_b.items()}
    sections.append(("packages", problems + _diff_maps(versions_a, versions_b)))
    sections.append(("sbom", sbom_problems("A", a, dists_a) + sbom_problems("B", b, dists_b)))

    files: list[str] = [] if names else ["no workspace distribution: no SBOM marks one"]
    scripts: list[str] = []
    venv_a, venv_b = a.env().get("VIRTUAL_ENV", ""), b.env().get("VIRTUAL_ENV", "")
    for name in names:
        da, db = dists_a.get(name), dists_b.get(name)
        if da is None or db is None:
            files.append(f"{name}: {'missing in A' if da is None else 'missing in B'}")
            continue
        fa, fb = workspace_files(a, da), workspace_files(b, db)
        files += [f"{name}: only in A: {p}" for p in sorted(fa - fb)]
        files += [f"{name}: only in B: {p}" for p in sorted(fb - fa)]
        for script in sorted(set(da.scripts) | set(db.scripts)):
            in_a = a.node(posixpath.join(venv_a, "bin", script)) is not None
            in_b = b.node(posixpath.join(venv_b, "bin", script)) is not None
            if not (in_a and in_b):
                scripts.append(
                    f"bin/{script}: A {'yes' if in_a else 'no'} | B {'yes' if in_b else 'no'}"
                )
    sections.append(("workspace files", files))
    sections.append(("console scripts", scripts))

    tops = {a.config.get("WorkingDir"), b.config.get("WorkingDir")}
    tops |= {a.env().get("HOME"), b.env().get("HOME")}
    tops |= {(a.config.get("Entrypoint") or [None])[0], (b.config.get("Entrypoint") or [None])[0]}
    for top in sorted(t for t in tops if t):
        sections.append((f"tree {top}", _diff_maps(tree(a, top), tree(b, top))))
    return [(title, lines) for title, lines in sections if lines]


def summary(a: Image, workspace: Iterable[str]) -> str:
    """What was found equal, in figures."""
    dists = distributions(a)
    names = sorted({canonical(w) for w in workspace} & dists.keys())
    n_files = sum(len(workspace_files(a, dists[name])) for name in names)
    return (
        f"same config, {len(dists)} distributions with the same versions, {n_files} workspace "
        f"files ({', '.join(names)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "a", help="ARCHIVE or INSPECT.json,EXPORT.tar (e.g. the Docker-built image)"
    )
    parser.add_argument("b", help="ARCHIVE or INSPECT.json,EXPORT.tar (e.g. the Nix-built image)")
    parser.add_argument(
        "--workspace",
        action="append",
        help="a workspace distribution (repeat; default: the components either image's SBOM "
        f"marks with {WORKSPACE_PROPERTY})",
    )
    args = parser.parse_args(argv)
    try:
        a, b = load(args.a), load(args.b)
        workspace = args.workspace or derive_workspace(a, b)
        sections = compare(a, b, workspace)
    except (InputError, OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"A: {args.a}\nB: {args.b}")
    if not sections:
        print(f"no difference: {summary(a, workspace)}")
        return 0
    for title, lines in sections:
        print(f"{title}:")
        for line in lines:
            print(f"  {line}")
    print(f"{sum(len(lines) for _, lines in sections)} difference(s)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
