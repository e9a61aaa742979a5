"""Read every path of every layer of a saved image, and flag files that hold a private key.

A private key is a PEM block with a body, in any non-ELF file.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from deploy_tools.image import layerdiff

# A PEM private key: the header line followed by a base64 body (not just the header string,
# which TLS libraries and this very module contain).
_PEM_KEY = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n)*[A-Za-z0-9+/=]{40,}"
)


@dataclass
class LayerScan:
    """Paths (with the index of the layer that holds them) and files holding a private key."""

    manifest_digest: str
    paths: dict[str, int] = field(default_factory=dict)
    private_keys: list[str] = field(default_factory=list)


def holds_private_key(data: bytes) -> bool:
    """Whether ``data`` contains a PEM-encoded private key."""
    return _PEM_KEY.search(data) is not None


def scan_archive(archive: Path, max_file_bytes: int = 8 << 20) -> LayerScan:
    """Scan an OCI archive (`docker save` output); file contents up to ``max_file_bytes``."""
    image = layerdiff.read_image(archive)
    scan = LayerScan(image.manifest_digest)
    with tarfile.open(archive) as outer:
        for index, digest in enumerate(image.layers):
            with tarfile.open(fileobj=layerdiff.blob(outer, digest), mode="r:*") as layer:
                for member in layer:
                    name = member.name.removeprefix("./")
                    scan.paths[name] = index
                    if member.isfile() and member.size <= max_file_bytes:
                        fh = layer.extractfile(member)
                        data = fh.read() if fh else b""
                        # ELF objects are skipped: TLS libraries embed self-test keys
                        # (Debian's libgnutls does); a leaked key would be a PEM file.
                        if not data.startswith(b"\x7fELF") and holds_private_key(data):
                            scan.private_keys.append(name)
    return scan
