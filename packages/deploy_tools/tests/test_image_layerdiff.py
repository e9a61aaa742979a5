"""The layer diff names the differing layer and files of two OCI archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from deploy_tools.image import layerdiff


def _layer(files: dict[str, tuple[bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mtime) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _archive(path: Path, layers: list[bytes], created: str) -> Path:
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    config = json.dumps({"created": created, "config": {"Env": ["A=1"]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "config": {"digest": add(config), "size": len(config)},
        "layers": [{"digest": add(layer), "size": len(layer)} for layer in layers],
    }).encode()  # fmt: skip
    mdigest = add(manifest)
    index = json.dumps({"manifests": [{"digest": mdigest, "mediaType":
                        "application/vnd.oci.image.manifest.v1+json"}]}).encode()  # fmt: skip
    with tarfile.open(path, "w") as tar:
        for name, data in [("index.json", index)] + [
            (f"blobs/sha256/{d.split(':')[1]}", b) for d, b in blobs.items()
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_identical_archives_have_no_diff(tmp_path: Path) -> None:
    layer = _layer({"opt/a.py": (b"x", 10)})
    a = _archive(tmp_path / "a.tar", [layer], "1970-01-01T00:00:10Z")
    b = _archive(tmp_path / "b.tar", [layer], "1970-01-01T00:00:10Z")
    assert layerdiff.diff_archives(a, b) == ([], [])
    assert layerdiff.read_image(a).manifest_digest == layerdiff.read_image(b).manifest_digest


def test_names_layer_and_files_that_differ(tmp_path: Path) -> None:
    base = _layer({"etc/passwd": (b"root", 1)})
    top_a = _layer({"opt/a.py": (b"x", 10), "opt/b.py": (b"same", 10), "opt/only-a": (b"", 10)})
    top_b = _layer({"opt/a.py": (b"y", 10), "opt/b.py": (b"same", 99)})
    a = _archive(tmp_path / "a.tar", [base, top_a], "1970-01-01T00:00:10Z")
    b = _archive(tmp_path / "b.tar", [base, top_b], "1970-01-01T00:00:11Z")
    config, layers = layerdiff.diff_archives(a, b)
    assert config == ["created: '1970-01-01T00:00:10Z' != '1970-01-01T00:00:11Z'"]
    assert [d.index for d in layers] == [1]
    files = layers[0].files
    assert "only in A: opt/only-a" in files
    assert any(f.startswith("opt/a.py (") and "sha256" in f for f in files)
    assert any(f.startswith("opt/b.py (") and "mtime: 10 != 99" in f for f in files)
    assert "layer 1:" in layers[0].describe()
    assert changed_layers(layerdiff.read_image(a), layerdiff.read_image(b)) == [1]


def changed_layers(a: layerdiff.Image, b: layerdiff.Image) -> list[int]:
    """Indexes of layers whose digests differ between two images (by position)."""
    n = max(len(a.layers), len(b.layers))
    return [i for i in range(n) if a.layers[i : i + 1] != b.layers[i : i + 1]]
