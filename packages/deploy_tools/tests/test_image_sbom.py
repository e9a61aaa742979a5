"""The image's CycloneDX SBOM: what a venv has installed, uv.lock's hashes, byte-identical.

Fake venvs (dist-info folders written here) against a small uv.lock, then this test venv
against the real uv.lock. The SBOM inside a built image is checked in tests/image.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from deploy_tools.image import sbom

ROOT = Path(__file__).resolve().parents[3]
PURE = "py3-none-any"
NATIVE = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"

LOCK = """\
version = 1
requires-python = ">=3.11"

[[package]]
name = "demo-root"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "demo-core", extra = ["aws"] },
    { name = "demo-flows" },
]

[[package]]
name = "demo-core"
version = "0.1.0"
source = { editable = "packages/core" }
dependencies = [{ name = "requests" }]

[package.optional-dependencies]
aws = [{ name = "boto" }]

[[package]]
name = "demo-flows"
version = "0.2.0"
source = { editable = "packages/flows" }
dependencies = [
    { name = "demo-core" },
    { name = "pywin32", marker = "sys_platform == 'win32'" },
]

[[package]]
name = "demo-notes"
version = "0.0.1"
source = { virtual = "packages/notes" }

[[package]]
name = "requests"
version = "2.32.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "charset-normalizer" }]
sdist = { url = "https://files.example/requests-2.32.0.tar.gz", hash = "sha256:aaaa", size = 1 }
wheels = [{ url = "https://files.example/requests-2.32.0-py3-none-any.whl", hash = "sha256:bbbb", size = 1 }]

[[package]]
name = "charset-normalizer"
version = "3.4.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.example/charset_normalizer-3.4.0.tar.gz", hash = "sha256:cccc", size = 1 }
wheels = [
    { url = "https://files.example/charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", hash = "sha256:dddd", size = 1 },
    { url = "https://files.example/charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl", hash = "sha256:eeee", size = 1 },
]

[[package]]
name = "boto"
version = "1.0.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.example/boto-1.0.0.tar.gz", hash = "sha256:ffff", size = 1 }
wheels = [{ url = "https://files.example/boto-1.0.0-py3-none-any.whl", hash = "sha256:1111", size = 1 }]

[[package]]
name = "pywin32"
version = "312"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://files.example/pywin32-312-cp311-cp311-win_amd64.whl", hash = "sha256:2222", size = 1 }]
"""

# name, version, WHEEL tags (None: no WHEEL file). What `pip install` of the image would leave.
INSTALLED = [
    ("demo_core", "0.1.0", PURE),
    ("demo_flows", "0.2.0", PURE),
    ("requests", "2.32.0", PURE),
    ("charset_normalizer", "3.4.0", NATIVE),
    ("boto", "1.0.0", PURE),
]


def make_venv(root: Path, dists: list[tuple[str, str, str | None]]) -> Path:
    """A folder with the layout of a venv and one dist-info per entry of ``dists``."""
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for name, version, tags in dists:
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        if tags is not None:
            lines = [f"Tag: {t}" for t in _expand(tags)]
            (info / "WHEEL").write_text("Wheel-Version: 1.0\n" + "\n".join(lines) + "\n")
        (info / "RECORD").write_text(f"{info.name}/METADATA,,\n")
    return root


def _expand(tags: str) -> list[str]:
    py, abi, plats = tags.split("-")
    return [f"{py}-{abi}-{p}" for p in plats.split(".")]


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "uv.lock"
    path.write_text(LOCK)
    return path


def _generate(tmp_path: Path, lock: Path, dists: list[tuple[str, str, str | None]]) -> bytes:
    return sbom.generate(make_venv(tmp_path / "venv", dists), lock)


def _components(data: bytes) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(data)["components"]}


def test_components_are_exactly_the_installed_distributions(tmp_path: Path, lock: Path) -> None:
    extra = [("pip", "24.0", PURE)]  # installed, not in the lock: listed, without a hash
    components = _components(_generate(tmp_path, lock, INSTALLED + extra))
    assert set(components) == {
        "demo-core", "demo-flows", "requests", "charset-normalizer", "boto", "pip"
    }  # fmt: skip
    # Locked but not installed: the virtual member (no package), pywin32 (a Windows marker).
    assert "demo-notes" not in components
    assert "pywin32" not in components
    assert components["pip"]["purl"] == "pkg:pypi/pip@24.0"
    assert "externalReferences" not in components["pip"]
    assert "hashes" not in components["pip"]


def test_the_locked_file_installed_is_named_with_its_hash(tmp_path: Path, lock: Path) -> None:
    components = _components(_generate(tmp_path, lock, INSTALLED))
    charset = components["charset-normalizer"]
    # The wheel whose tags are the installed WHEEL's (not the Windows one, not the sdist).
    assert charset["hashes"] == [{"alg": "SHA-256", "content": "dddd"}]
    assert [r["url"] for r in charset["externalReferences"]] == [
        "https://files.example/charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64"
        ".manylinux2014_x86_64.whl"
    ]
    assert charset["externalReferences"][0]["type"] == "distribution"
    assert components["requests"]["hashes"] == [{"alg": "SHA-256", "content": "bbbb"}]
    assert components["requests"]["purl"] == "pkg:pypi/requests@2.32.0"
    assert components["requests"]["bom-ref"] == "pkg:pypi/requests@2.32.0"


def test_built_from_source_names_the_sdist_another_version_nothing(
    tmp_path: Path, lock: Path
) -> None:
    """A wheel built here (tags no locked wheel has, e.g. by Nix from the sdist): the locked
    sdist, and no component hash (the installed file is not the locked one). A version the
    lock does not pin: no reference at all."""
    dists = [("requests", "2.32.0", "cp311-cp311-linux_x86_64"), ("boto", "1.0.1", PURE)]
    components = _components(_generate(tmp_path, lock, dists))
    assert [r["url"] for r in components["requests"]["externalReferences"]] == [
        "https://files.example/requests-2.32.0.tar.gz"
    ]
    assert "hashes" not in components["requests"]
    assert "externalReferences" not in components["boto"]
    assert components["boto"]["version"] == "1.0.1"


def test_workspace_members_are_marked_with_their_path(tmp_path: Path, lock: Path) -> None:
    components = _components(_generate(tmp_path, lock, INSTALLED))
    members = {
        name: c["properties"]
        for name, c in components.items()
        if any(p["name"] == sbom.WORKSPACE_PROPERTY for p in c.get("properties", []))
    }
    assert members == {
        "demo-core": [{"name": "airnub:workspace:path", "value": "packages/core"}],
        "demo-flows": [{"name": "airnub:workspace:path", "value": "packages/flows"}],
    }
    assert all("externalReferences" not in components[m] for m in members)


def test_dependencies_are_the_locks_edges_between_installed_components(
    tmp_path: Path, lock: Path
) -> None:
    data = json.loads(_generate(tmp_path, lock, INSTALLED))
    deps = {d["ref"].split("/")[-1]: [r.split("/")[-1] for r in d["dependsOn"]]
            for d in data["dependencies"]}  # fmt: skip
    assert deps == {
        # The root asks for demo-core[aws]: boto is core's through that extra.
        "demo-root@0.1.0": ["demo-core@0.1.0", "demo-flows@0.2.0"],
        "demo-core@0.1.0": ["boto@1.0.0", "requests@2.32.0"],
        "demo-flows@0.2.0": ["demo-core@0.1.0"],  # pywin32: marker false, not installed
        "requests@2.32.0": ["charset-normalizer@3.4.0"],
        "charset-normalizer@3.4.0": [],
        "boto@1.0.0": [],
    }
    refs = {c["bom-ref"] for c in data["components"]} | {data["metadata"]["component"]["bom-ref"]}
    for dep in data["dependencies"]:
        assert dep["ref"] in refs
        assert set(dep["dependsOn"]) <= refs, dep["ref"]
    # An edge whose marker is false here is not followed, even to an installed component.
    windows = json.loads(_generate(tmp_path / "w", lock, [*INSTALLED, ("pywin32", "312", None)]))
    flows = [d for d in windows["dependencies"] if d["ref"] == "pkg:pypi/demo-flows@0.2.0"]
    assert flows == [
        {"ref": "pkg:pypi/demo-flows@0.2.0", "dependsOn": ["pkg:pypi/demo-core@0.1.0"]}
    ]
    assert data["metadata"]["component"] == {
        "type": "application", "bom-ref": "demo-root@0.1.0", "name": "demo-root",
        "version": "0.1.0",
    }  # fmt: skip


def test_byte_identical_from_the_same_set_wherever_and_in_whatever_order(
    tmp_path: Path, lock: Path
) -> None:
    first = _generate(tmp_path / "a", lock, INSTALLED)
    second = _generate(tmp_path / "b" / "deeper", lock, list(reversed(INSTALLED)))
    assert first == second
    assert str(tmp_path).encode() not in first  # no path of this machine
    data = json.loads(first)
    assert first == (json.dumps(data, sort_keys=True, indent=2) + "\n").encode()
    assert (data["bomFormat"], data["specVersion"]) == ("CycloneDX", "1.5")
    assert "timestamp" not in data["metadata"]
    names = [c["name"] for c in data["components"]]
    assert names == sorted(names)
    assert [d["ref"] for d in data["dependencies"]] == sorted(
        d["ref"] for d in data["dependencies"]
    )


def test_serial_is_derived_from_the_content(tmp_path: Path, lock: Path) -> None:
    data = json.loads(_generate(tmp_path / "a", lock, INSTALLED))
    serial = data.pop("serialNumber")
    digest = hashlib.sha256(sbom.render(data)).hexdigest()
    assert serial == f"urn:uuid:{uuid.uuid5(sbom.SERIAL_NAMESPACE, digest)}"
    other = json.loads(_generate(tmp_path / "b", lock, INSTALLED[:-1]))  # boto not installed
    assert other["serialNumber"] != serial


def test_cli_writes_the_file_or_standard_output(tmp_path: Path, lock: Path) -> None:
    venv = make_venv(tmp_path / "venv", INSTALLED)
    out = tmp_path / "out" / "sbom.cdx.json"
    assert sbom.main(["--lock", str(lock), "--venv", str(venv), "--output", str(out)]) == 0
    assert out.read_bytes() == sbom.generate(venv, lock)
    proc = subprocess.run(
        [sys.executable, "-m", "deploy_tools.image.sbom", "--lock", str(lock), "--venv", str(venv)],
        capture_output=True, check=True,
    )  # fmt: skip
    assert proc.stdout == out.read_bytes()
    assert sbom.main(["--lock", str(lock), "--venv", str(tmp_path / "nothing")]) == 1


def test_no_generated_sbom_is_committed() -> None:
    """Nothing for `uv add` or `airnub new project` to make stale."""
    tracked = subprocess.run(
        ["git", "ls-files", "*.cdx.json", "**/*.cdx.json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert tracked == ""


def test_this_venv_against_the_real_lock() -> None:
    """The test environment (the workspace installed editable, plus the dev group): every
    workspace member of uv.lock is listed and marked; packages at their locked version name a
    locked file."""
    data = sbom.generate(Path(sys.prefix), ROOT / "uv.lock")
    components = _components(data)
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    members = {
        canonicalize_name(p["name"]): p["source"]["editable"]
        for p in lock["package"]
        if p["source"].get("editable", ".") != "."
    }
    assert len(members) >= 2  # the generic pipeline_core and deploy_tools, whatever projects exist
    for name, path in members.items():
        assert components[name]["properties"] == [{"name": sbom.WORKSPACE_PROPERTY, "value": path}]
    locked = {(canonicalize_name(p["name"]), p["version"]) for p in lock["package"]}
    at_locked = [c for n, c in components.items() if (n, c["version"]) in locked]
    third_party = [c for c in at_locked if c["name"] not in members]
    assert any(c["name"] == "prefect" for c in third_party)
    assert all(c.get("externalReferences") for c in third_party), [
        c["name"] for c in third_party if not c.get("externalReferences")
    ]
    assert sbom.generate(Path(sys.prefix), ROOT / "uv.lock") == data


def test_airnub_image_sbom_venv_writes_that_venvs_sbom(tmp_path: Path, lock: Path) -> None:
    """`hatch run image:sbom --venv DIR`: the generator on a venv, with the project's uv.lock."""
    from typer.testing import CliRunner

    from deploy_tools.cli import app

    venv = make_venv(tmp_path / "venv", INSTALLED)
    out = tmp_path / "sbom.cdx.json"
    args = ["image", "sbom", "--venv", str(venv), "--project", str(tmp_path), "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == sbom.generate(venv, lock)
