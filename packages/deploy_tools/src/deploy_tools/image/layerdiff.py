"""Compare two images layer by layer and name the files that differ (diffoci-style, stdlib only).

Input: OCI/docker archives as written by `docker save` or `buildx --output type=oci`. Layers are
matched by position; for a layer whose digest differs, every tar member is compared on type,
mode, owner, mtime, size, link target, PAX headers and content hash.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


@dataclass(frozen=True)
class Entry:
    """The comparable facts about one tar member."""

    type: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    linkname: str
    pax: tuple[tuple[str, str], ...]
    sha256: str


@dataclass
class LayerDiff:
    """One differing layer and what differs inside it."""

    index: int
    digest_a: str | None
    digest_b: str | None
    files: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Human-readable report, one file per line."""
        head = f"layer {self.index}: {self.digest_a} != {self.digest_b}"
        return "\n".join([head, *(f"  {line}" for line in self.files)])


@dataclass(frozen=True)
class Image:
    """Manifest digest, config and layer digests read from an archive."""

    manifest_digest: str
    config: dict[str, Any]
    layers: list[str]


def blob(tar: tarfile.TarFile, digest: str) -> IO[bytes]:
    """Open the blob ``digest`` of an OCI archive."""
    algo, hexdigest = digest.split(":", 1)
    fh = tar.extractfile(f"blobs/{algo}/{hexdigest}")
    if fh is None:
        raise KeyError(digest)
    return fh


def _json(tar: tarfile.TarFile, digest: str) -> dict[str, Any]:
    data: dict[str, Any] = json.load(blob(tar, digest))
    return data


def _manifest_digest(tar: tarfile.TarFile) -> str:
    fh = tar.extractfile("index.json")
    if fh is None:
        raise KeyError("index.json")
    desc = json.load(fh)["manifests"][0]
    while desc.get("mediaType") in _INDEX_TYPES:
        sub = _json(tar, desc["digest"])["manifests"]
        desc = next((m for m in sub if m.get("platform", {}).get("os") != "unknown"), sub[0])
    return str(desc["digest"])


def read_image(archive: Path) -> Image:
    """Read the (first) image of an OCI archive."""
    with tarfile.open(archive) as tar:
        digest = _manifest_digest(tar)
        manifest = _json(tar, digest)
        config = _json(tar, manifest["config"]["digest"])
        return Image(digest, config, [layer["digest"] for layer in manifest["layers"]])


def layer_entries(fileobj: IO[bytes]) -> dict[str, Entry]:
    """Index a (possibly compressed) layer tar by member name."""
    entries: dict[str, Entry] = {}
    with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
        for member in tar:
            sha = ""
            if member.isfile():
                fh = tar.extractfile(member)
                sha = hashlib.sha256(fh.read() if fh else b"").hexdigest()
            kind = "file" if member.isfile() else "dir" if member.isdir() else (
                "symlink" if member.issym() else "hardlink" if member.islnk() else str(member.type)
            )  # fmt: skip
            entries[member.name.removeprefix("./")] = Entry(
                kind, member.mode, member.uid, member.gid, int(member.mtime), member.size,
                member.linkname, tuple(sorted(member.pax_headers.items())), sha,
            )  # fmt: skip
    return entries


def diff_entries(a: dict[str, Entry], b: dict[str, Entry]) -> list[str]:
    """Lines naming each path only in one side, or the fields that differ for a common path."""
    lines = [f"only in A: {name}" for name in sorted(a.keys() - b.keys())]
    lines += [f"only in B: {name}" for name in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        ea, eb = a[name], b[name]
        if ea != eb:
            fields = [
                f"{f}: {getattr(ea, f)!r} != {getattr(eb, f)!r}"
                for f in Entry.__dataclass_fields__
                if getattr(ea, f) != getattr(eb, f)
            ]
            lines.append(f"{name} ({'; '.join(fields)})")
    return lines


def diff_configs(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Top-level config keys (and ``config.*`` keys) whose values differ."""
    lines = []
    for key in sorted(a.keys() | b.keys()):
        if key == "config" and isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            lines += [f"config.{k}: {a[key].get(k)!r} != {b[key].get(k)!r}"
                      for k in sorted(a[key].keys() | b[key].keys())
                      if a[key].get(k) != b[key].get(k)]  # fmt: skip
        elif a.get(key) != b.get(key):
            lines.append(f"{key}: {a.get(key)!r} != {b.get(key)!r}")
    return lines


@contextmanager
def _open(archive: Path) -> Iterator[tarfile.TarFile]:
    with tarfile.open(archive) as tar:
        yield tar


def diff_archives(a: Path, b: Path) -> tuple[list[str], list[LayerDiff]]:
    """Compare two image archives: (config differences, differing layers with their files)."""
    img_a, img_b = read_image(a), read_image(b)
    config_lines = diff_configs(img_a.config, img_b.config)
    layers: list[LayerDiff] = []
    with _open(a) as tar_a, _open(b) as tar_b:
        for i in range(max(len(img_a.layers), len(img_b.layers))):
            da = img_a.layers[i] if i < len(img_a.layers) else None
            db = img_b.layers[i] if i < len(img_b.layers) else None
            if da == db:
                continue
            diff = LayerDiff(i, da, db)
            if da is not None and db is not None:
                diff.files = diff_entries(
                    layer_entries(blob(tar_a, da)), layer_entries(blob(tar_b, db))
                ) or ["(same files and metadata: the tar stream or compression differs)"]
            layers.append(diff)
    return config_lines, layers
