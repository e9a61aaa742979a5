"""ci/compare_images.py on two tiny hand-made images: a Docker-style archive (venv as a folder,
a whiteout) and a Nix-style OCI archive (venv a link into /nix/store, read-only modes)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ci.conftest import load_ci_script

SITE = "lib/python3.11/site-packages"

ci = load_ci_script("compare_images")

# (name, kind, data or link target, mode, uid)
Entry = tuple[str, str, bytes | str, int, int]


def _tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, mode, uid in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 1
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                assert isinstance(payload, str)
                info.linkname = payload
                tar.addfile(info)
            else:
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA package.\n".encode()


def _dist(prefix: str, name: str, version: str, files: list[str], scripts: str = "") -> list[Entry]:
    """A dist-info folder (METADATA, RECORD, entry_points.txt) under `prefix`."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    record = "".join(f"{f},sha256=x,1\n" for f in [*files, f"{info}/METADATA", f"{info}/RECORD"])
    entries: list[Entry] = [
        (f"{prefix}/{info}", "dir", b"", 0o755, 0),
        (f"{prefix}/{info}/METADATA", "file", _metadata(name, version), 0o644, 0),
        (f"{prefix}/{info}/RECORD", "file", record.encode(), 0o644, 0),
    ]
    if scripts:
        entries.append((f"{prefix}/{info}/entry_points.txt", "file", scripts.encode(), 0o644, 0))
    return entries


# The fixtures hold one workspace distribution (their SBOMs mark it so).
ONLY_CORE = ["--workspace", "airnub-pipeline-core"]
CORE_FILES = ["pipeline_core/__init__.py", "pipeline_core/urls.py", "../../../bin/airnub"]
SCRIPTS = "[console_scripts]\nairnub = pipeline_core.cli:main\n"
CONFIG: dict[str, Any] = {
    "Entrypoint": ["/usr/local/bin/airnub-entrypoint"],
    "Cmd": ["--pool", "airnub-docker"],
    "User": "10001:10001",
    "WorkingDir": "/app",
    "Env": ["PATH=/opt/venv/bin:/usr/bin", "VIRTUAL_ENV=/opt/venv", "HOME=/home/airnub"],
    "Labels": {
        "org.opencontainers.image.revision": "abc",
        "org.opencontainers.image.version": "0.1.0",
    },
}


# /app/sbom.cdx.json: what the fixtures' venvs hold (components' other fields left out); the
# workspace member is marked as deploy_tools.image.sbom marks it.
MEMBER = [{"name": "airnub:workspace:path", "value": "packages/pipeline_core"}]
SBOM = json.dumps(
    {"bomFormat": "CycloneDX", "components": [
        {"name": "prefect", "version": "3.0.0"},
        {"name": "airnub_pipeline_core", "version": "0.1.0", "properties": MEMBER},
    ]}
).encode()  # fmt: skip


def _root(exec_mode: int, file_mode: int) -> list[Entry]:
    """/app, /home/airnub and the entrypoint, as both builds make them."""
    return [
        ("app", "dir", b"", 0o755, 0),
        ("app/sbom.cdx.json", "file", SBOM, file_mode, 0),
        ("app/deploy", "dir", b"", 0o755, 0),
        ("app/deploy/prefect.yaml", "file", b"deployments: []\n", file_mode, 0),
        ("app/data", "dir", b"", 0o755, 10001),
        ("home", "dir", b"", 0o755, 0),
        ("home/airnub", "dir", b"", 0o755, 10001),
        ("home/airnub/.prefect", "dir", b"", 0o755, 10001),
        ("usr/local/bin/airnub-entrypoint", "file", b'#!/bin/sh\nexec "$@"\n', exec_mode, 0),
    ]


def docker_layers() -> list[list[Entry]]:
    site = f"opt/venv/{SITE}"
    base: list[Entry] = [
        ("opt/venv/bin/airnub", "file", b"#!/opt/venv/bin/python\n", 0o755, 0),
        *_dist(site, "prefect", "3.0.0", ["prefect/__init__.py"]),
        (f"{site}/prefect/__init__.py", "file", b"", 0o644, 0),
        *_dist(site, "airnub-pipeline-core", "0.1.0", CORE_FILES, SCRIPTS),
        (f"{site}/pipeline_core/__init__.py", "file", b"", 0o644, 0),
        (f"{site}/pipeline_core/urls.py", "file", b"x = 1\n", 0o644, 0),
        (f"{site}/pipeline_core/__pycache__/urls.cpython-311.pyc", "file", b"pyc", 0o644, 0),
        *_dist(site, "stale", "1.0", ["stale.py"]),
    ]
    top: list[Entry] = [
        (f"{site}/.wh.stale-1.0.dist-info", "file", b"", 0o644, 0),
        *_root(0o755, 0o644),
    ]
    return [base, top]


def nix_layers(
    edit: Callable[[list[Entry]], list[Entry]] = lambda e: e,
) -> list[list[Entry]]:
    prefect = f"nix/store/aaa-prefect-3.0.0/{SITE}"
    core = f"nix/store/bbb-airnub-pipeline-core-0.1.0/{SITE}"
    venv = "nix/store/ccc-airnub-worker-venv"
    store: list[Entry] = [
        *_dist(prefect, "prefect", "3.0.0", ["prefect/__init__.py"]),
        (f"{prefect}/prefect/__init__.py", "file", b"", 0o444, 0),
        *_dist(core, "airnub-pipeline-core", "0.1.0", CORE_FILES, SCRIPTS),
        (f"{core}/pipeline_core/__init__.py", "file", b"", 0o444, 0),
        (f"{core}/pipeline_core/urls.py", "file", b"x = 1\n", 0o444, 0),
        (f"{venv}/bin/airnub", "file", b"#!/nix/store/python\n", 0o555, 0),
        (f"{venv}/{SITE}", "dir", b"", 0o555, 0),
        # pyproject.nix's venv: links into each package's store path.
        (
            f"{venv}/{SITE}/prefect-3.0.0.dist-info",
            "link",
            f"/{prefect}/prefect-3.0.0.dist-info",
            0o777,
            0,
        ),
        (f"{venv}/{SITE}/prefect", "link", f"/{prefect}/prefect", 0o777, 0),
        (
            f"{venv}/{SITE}/airnub_pipeline_core-0.1.0.dist-info",
            "link",
            f"/{core}/airnub_pipeline_core-0.1.0.dist-info",
            0o777,
            0,
        ),
        (
            f"{venv}/{SITE}/pipeline_core",
            "link",
            f"../../../../bbb-airnub-pipeline-core-0.1.0/{SITE}/pipeline_core",
            0o777,
            0,
        ),
    ]
    root: list[Entry] = [("opt/venv", "link", f"/{venv}", 0o777, 0), *_root(0o555, 0o444)]
    return [edit(store), edit(root)]


def write_docker_archive(path: Path, layers: list[list[Entry]], config: dict[str, Any]) -> Path:
    """`docker save` layout: manifest.json naming the config and layer tars (one gzipped)."""
    with tarfile.open(path, "w") as out:
        names = []
        for i, entries in enumerate(layers):
            data = _tar(entries)
            if i == 1:
                data = gzip.compress(data, mtime=0)
            names.append(f"layer{i}/layer.tar")
            _add(out, names[-1], data)
        _add(out, "config.json", json.dumps({"config": config}).encode())
        manifest = [{"Config": "config.json", "RepoTags": ["a:1"], "Layers": names}]
        _add(out, "manifest.json", json.dumps(manifest).encode())
    return path


def write_oci_archive(path: Path, layers: list[list[Entry]], config: dict[str, Any]) -> Path:
    """OCI layout: index.json -> manifest -> config and gzipped layers, all as blobs."""
    with tarfile.open(path, "w") as out:

        def blob(data: bytes, media: str) -> dict[str, Any]:
            digest = hashlib.sha256(data).hexdigest()
            _add(out, f"blobs/sha256/{digest}", data)
            return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

        layer_descs = [
            blob(gzip.compress(_tar(e), mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
            for e in layers
        ]
        config_desc = blob(
            json.dumps({"config": config}).encode(), "application/vnd.oci.image.config.v1+json"
        )
        manifest = {"schemaVersion": 2, "config": config_desc, "layers": layer_descs}
        manifest_desc = blob(
            json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"
        )
        _add(
            out,
            "index.json",
            json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode(),
        )
        _add(out, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    return path


def _add(out: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))


@pytest.fixture
def docker_image(tmp_path: Path) -> Path:
    return write_docker_archive(tmp_path / "docker.tar", docker_layers(), CONFIG)


def test_same_workspace_in_both_images_is_no_difference(
    docker_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nix = write_oci_archive(tmp_path / "nix.tar", nix_layers(), CONFIG)

    # The workspace is read from the SBOMs, or named.
    for extra in ([], ONLY_CORE):
        assert ci.main([str(docker_image), str(nix), *extra]) == 0
        out = capsys.readouterr().out
        # prefect and the core (the whited-out `stale` is gone), 2 files (no __pycache__).
        assert (
            "no difference: same config, 2 distributions with the same versions, 2 workspace "
            "files (airnub-pipeline-core)"
        ) in out


def test_the_workspace_is_every_member_either_sbom_marks(
    docker_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A member one SBOM marks (here: prefect, in B's) is compared like any other; with no
    member marked anywhere, that is a difference, not a silent pass."""
    marked = json.dumps(
        {"components": [
            {"name": "prefect", "version": "3.0.0", "properties": MEMBER},
            {"name": "airnub_pipeline_core", "version": "0.1.0", "properties": MEMBER},
        ]}
    ).encode()  # fmt: skip
    unmarked = json.dumps(
        {"components": [
            {"name": "prefect", "version": "3.0.0"},
            {"name": "airnub_pipeline_core", "version": "0.1.0"},
        ]}
    ).encode()  # fmt: skip

    def sbom(data: bytes) -> Callable[[list[Entry]], list[Entry]]:
        def edit(entries: list[Entry]) -> list[Entry]:
            return [
                (n, k, data if n == "app/sbom.cdx.json" else d, m, u) for n, k, d, m, u in entries
            ]

        return edit

    def without_prefect(entries: list[Entry]) -> list[Entry]:
        return [e for e in entries if "/prefect" not in e[0]]

    nix = write_oci_archive(tmp_path / "nix.tar", nix_layers(sbom(marked)), CONFIG)
    assert ci.main([str(docker_image), str(nix)]) == 0
    assert "3 workspace files (airnub-pipeline-core, prefect)" in capsys.readouterr().out

    edited = nix_layers(lambda e: sbom(marked)(without_prefect(e)))
    nix = write_oci_archive(tmp_path / "nix-2.tar", edited, CONFIG)
    assert ci.main([str(docker_image), str(nix)]) == 1
    assert "workspace files:\n  prefect: missing in B\n" in capsys.readouterr().out

    docker = write_docker_archive(
        tmp_path / "docker-2.tar", [docker_layers()[0], sbom(unmarked)(docker_layers()[1])], CONFIG
    )
    nix = write_oci_archive(tmp_path / "nix-3.tar", nix_layers(sbom(unmarked)), CONFIG)
    assert ci.main([str(docker), str(nix)]) == 1
    assert "workspace files:\n  no workspace distribution: no SBOM marks one\n" in (
        capsys.readouterr().out
    )
    assert ci.main([str(docker), str(nix), *ONLY_CORE]) == 0


def test_each_kind_of_difference_is_printed(
    docker_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(entries: list[Entry]) -> list[Entry]:
        edited: list[Entry] = []
        for name, kind, payload, mode, uid in entries:
            if name.endswith("urls.py") or name.endswith("bin/airnub"):
                continue  # a workspace file and the console script missing
            if name.endswith("prefect-3.0.0.dist-info/METADATA"):
                payload = _metadata("prefect", "3.0.1")
            if name == "app/data":
                uid = 0
            edited.append((name, kind, payload, mode, uid))
        return edited

    config = {
        **CONFIG,
        "User": "0:0",
        "Labels": {**CONFIG["Labels"], "org.opencontainers.image.revision": "def"},
    }
    nix = write_oci_archive(tmp_path / "nix.tar", nix_layers(edit), config)

    assert ci.main([str(docker_image), str(nix), *ONLY_CORE]) == 1
    out = capsys.readouterr().out
    expected = [
        "config:",
        "  User: A 10001:10001 | B 0:0",
        "  Labels org.opencontainers.image.revision: A abc | B def",
        "packages:",
        "  prefect: A 3.0.0 | B 3.0.1",
        "sbom:",
        "  B: prefect: SBOM 3.0.0 | installed 3.0.1",
        "workspace files:",
        "  airnub-pipeline-core: only in A: pipeline_core/urls.py",
        "console scripts:",
        "  bin/airnub: A yes | B no",
        "tree /app:",
        "  data: A dir 10001:10001 | B dir 0:0",
        "7 difference(s)",
    ]
    assert [line for line in out.splitlines() if not line.startswith(("A: ", "B: "))] == expected


def test_an_sbom_missing_or_unreadable_is_a_difference(
    docker_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def without_sbom(entries: list[Entry]) -> list[Entry]:
        return [e for e in entries if e[0] != "app/sbom.cdx.json"]

    def garbled(entries: list[Entry]) -> list[Entry]:
        return [(n, k, b"{" if n == "app/sbom.cdx.json" else d, m, u) for n, k, d, m, u in entries]

    nix = write_oci_archive(tmp_path / "nix.tar", nix_layers(without_sbom), CONFIG)
    assert ci.main([str(docker_image), str(nix), *ONLY_CORE]) == 1
    out = capsys.readouterr().out
    assert "sbom:\n  B: no /app/sbom.cdx.json\n" in out
    assert "  sbom.cdx.json: A file 0:0 | B -\n" in out  # and the /app tree says so

    nix = write_oci_archive(tmp_path / "nix2.tar", nix_layers(garbled), CONFIG)
    assert ci.main([str(docker_image), str(nix), *ONLY_CORE]) == 1
    assert "  B: /app/sbom.cdx.json is not a CycloneDX SBOM (" in capsys.readouterr().out


def test_docker_inspect_and_export_stand_for_an_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `docker export` flattens the layers: no whiteouts left, the stale package gone.
    flat = [e for e in docker_layers()[0] if "stale" not in e[0]] + docker_layers()[1][1:]
    export = tmp_path / "export.tar"
    export.write_bytes(_tar(flat))
    inspect = tmp_path / "inspect.json"
    inspect.write_text(json.dumps([{"Id": "sha256:x", "Config": CONFIG}]))
    nix = write_oci_archive(tmp_path / "nix.tar", nix_layers(), CONFIG)

    assert ci.main([f"{inspect},{export}", str(nix), *ONLY_CORE]) == 0
    assert "no difference" in capsys.readouterr().out


def test_an_input_that_is_not_an_image_is_exit_status_2(
    docker_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar")
    empty = tmp_path / "empty.tar"
    empty.write_bytes(_tar([("x", "file", b"", 0o644, 0)]))

    assert ci.main([str(docker_image), str(junk)]) == 2
    assert ci.main([str(docker_image), str(empty)]) == 2
    assert "neither manifest.json nor index.json" in capsys.readouterr().err
