"""The image's CycloneDX SBOM: from uv.lock, byte-identical across runs, the image's set only."""

from __future__ import annotations

import hashlib
import json
import platform
import random
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy_tools.image import sbom, wheelhouse
from deploy_tools.image.wheelhouse import Target

ROOT = Path(__file__).resolve().parents[3]
WORKSPACE = {"airnub-pipeline-core", "airnub-flows-alpha", "airnub-deploy-tools"}


def _target(full: str) -> Target:
    markers = {
        "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
        "platform_machine": "x86_64", "platform_release": "6.1", "platform_system": "Linux",
        "platform_version": "#1", "python_full_version": full,
        "platform_python_implementation": "CPython", "python_version": "3.11",
        "sys_platform": "linux",
    }  # fmt: skip
    return Target(markers=markers, glibc="2.36")


DEBIAN = _target("3.11.2")  # the offline base's interpreter


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """uv's own export (wall-clock timestamp, random serial)."""
    return sbom.export_cyclonedx(ROOT)


@pytest.fixture(scope="module")
def image_sbom() -> bytes:
    return sbom.generate(ROOT, target=DEBIAN, epoch=1_700_000_000)


def _components(data: bytes) -> dict[str, str]:
    return {c["name"]: c["version"] for c in json.loads(data)["components"]}


def _locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


@pytest.fixture(scope="module")
def whole() -> bytes:
    """The committed uv.lock.cdx.json (checked current by the first test)."""
    return (ROOT / sbom.LOCK_SBOM).read_bytes()


def test_committed_lock_sbom_describes_uv_lock(whole: bytes) -> None:
    assert whole == sbom.lock_sbom(ROOT), f"stale {sbom.LOCK_SBOM}: {sbom.REFRESH}"
    assert sbom.committed(ROOT) == whole


def test_two_generations_are_byte_identical(image_sbom: bytes) -> None:
    assert sbom.generate(ROOT, target=DEBIAN, epoch=1_700_000_000) == image_sbom
    assert sbom.lock_sbom(ROOT) == sbom.lock_sbom(ROOT)


def _workspace_copy(dest: Path) -> Path:
    """The files `uv export --frozen` reads: the root and member pyproject.toml and uv.lock."""
    for rel in ["pyproject.toml", "uv.lock", *(
        str(p.relative_to(ROOT)) for p in ROOT.glob("packages/*/pyproject.toml")
    )]:  # fmt: skip
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes((ROOT / rel).read_bytes())
    return dest


def test_a_missing_or_stale_lock_sbom_is_refused_then_rewritten(tmp_path: Path) -> None:
    project = _workspace_copy(tmp_path)
    with pytest.raises(sbom.StaleSbom, match=r"uv\.lock\.cdx\.json is missing; run `hatch run"):
        sbom.generate(project, target=DEBIAN)
    assert sbom.main(["lock", "--project", str(project), "--check"]) == 1
    assert sbom.main(["lock", "--project", str(project)]) == 0
    assert sbom.main(["lock", "--project", str(project), "--check"]) == 0
    assert (project / sbom.LOCK_SBOM).read_bytes() == (ROOT / sbom.LOCK_SBOM).read_bytes()
    # uv.lock changes (one wheel's hash) and the committed file no longer matches.
    lock = (project / "uv.lock").read_text()
    wheel_hash = "92daf7e42c52b0787e6c75d01ecfb9a94f4ceff3764958b570c1dddedd47b200"  # readchar
    assert wheel_hash in lock
    (project / "uv.lock").write_text(lock.replace(wheel_hash, "0" * 64))
    with pytest.raises(sbom.StaleSbom, match=r"does not describe .*uv\.lock any more"):
        sbom.generate(project, target=DEBIAN)
    assert sbom.main(["lock", "--project", str(project), "--check"]) == 1
    # `image build` rewrites it (and says so) rather than stop after a `uv lock`.
    assert sbom.refresh(project) == (sbom.lock_sbom(project), True)
    assert sbom.main(["lock", "--project", str(project), "--check"]) == 0
    assert sbom.refresh(project) == (sbom.lock_sbom(project), False)


def test_uv_alone_is_not_reproducible_normalised_it_is(raw: dict[str, Any]) -> None:
    # What is normalised away: uv writes a wall-clock timestamp and a random serial.
    assert "timestamp" in raw["metadata"]
    again = sbom.export_cyclonedx(ROOT)
    assert again["serialNumber"] != raw["serialNumber"]
    serial = sbom.serial_number("0" * 64)
    assert sbom.render(sbom.normalise(raw, serial=serial)) == sbom.render(
        sbom.normalise(again, serial=serial)
    )


def test_serial_is_derived_from_the_lock(image_sbom: bytes, whole: bytes) -> None:
    digest = hashlib.sha256((ROOT / "uv.lock").read_bytes()).hexdigest()
    lock_serial = json.loads(whole)["serialNumber"]
    assert lock_serial == f"urn:uuid:{uuid.uuid5(sbom.SERIAL_NAMESPACE, digest)}"
    # The image's SBOM (one interpreter's subset) has its own serial, from the lock's.
    serial = json.loads(image_sbom)["serialNumber"]
    assert serial == sbom.serial_number(lock_serial, DEBIAN.key) != lock_serial
    assert serial != json.loads(sbom.generate(ROOT, target=_target("3.11.7")))["serialNumber"]
    assert sbom.serial_number("1" * 64) != sbom.serial_number("2" * 64)
    uuid.UUID(serial.removeprefix("urn:uuid:"))  # a valid UUID


def test_timestamp_is_the_epoch_or_absent(image_sbom: bytes, whole: bytes) -> None:
    assert json.loads(image_sbom)["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    assert "timestamp" not in json.loads(whole)["metadata"]
    assert "timestamp" not in json.loads(sbom.generate(ROOT, target=DEBIAN))["metadata"]


def test_stable_json_sorted_keys_and_components(image_sbom: bytes) -> None:
    data = json.loads(image_sbom)
    assert image_sbom == (json.dumps(data, sort_keys=True, indent=2) + "\n").encode()
    assert data["bomFormat"] == "CycloneDX"
    assert data["specVersion"] == "1.5"
    names = [(c["name"], c["version"]) for c in data["components"]]
    assert names == sorted(names)
    refs = [d["ref"] for d in data["dependencies"]]
    assert refs == sorted(refs)
    assert str(ROOT).encode() not in image_sbom  # no path of this machine


def test_order_of_uv_output_does_not_matter(raw: dict[str, Any]) -> None:
    shuffled = json.loads(json.dumps(raw))
    rng = random.Random(7)
    rng.shuffle(shuffled["components"])
    rng.shuffle(shuffled["dependencies"])
    for dep in shuffled["dependencies"]:
        rng.shuffle(dep.get("dependsOn", []))
    for comp in shuffled["components"]:
        rng.shuffle(comp.get("externalReferences", []))
    serial = sbom.serial_number("0" * 64)
    assert sbom.render(sbom.normalise(shuffled, serial=serial, target=DEBIAN)) == sbom.render(
        sbom.normalise(raw, serial=serial, target=DEBIAN)
    )


def test_prefect_and_the_workspace_packages_with_locked_versions(image_sbom: bytes) -> None:
    components = _components(image_sbom)
    locked = _locked_versions()
    for name in ["prefect", *sorted(WORKSPACE)]:
        assert components[name] == locked[name], name
    # Every component is a locked package at its locked version.
    assert {n: locked[n] for n in components} == components
    meta = json.loads(image_sbom)["metadata"]
    assert meta["component"]["name"] == "airnub-prefect-starter"  # the workspace root


def test_no_dev_only_package(image_sbom: bytes, whole: bytes) -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = {canonicalize_name(Requirement(r).name) for r in root["dependency-groups"]["dev"]}
    runtime = {r.name for r in wheelhouse.parse_requirements(wheelhouse.export_lock(ROOT))}
    dev_only = dev - {canonicalize_name(n) for n in runtime}
    assert {"pytest", "hypothesis", "mypy", "ruff", "playwright", "moto"} <= dev_only
    for data in (image_sbom, whole):
        names = {canonicalize_name(n) for n in _components(data)}
        assert dev_only & names == set()
        assert "iniconfig" not in names  # pulled in by pytest only


def test_image_sbom_is_the_wheelhouse_set(whole: bytes) -> None:
    """Same packages the image installs: the wheelhouse's selection plus the workspace."""
    reqs = wheelhouse.parse_requirements(wheelhouse.export_lock(ROOT))
    for full in ("3.11.2", "3.11.7"):
        target = _target(full)
        expected = {r.name: r.version for r in wheelhouse.select(reqs, target)}
        components = _components(sbom.generate(ROOT, target=target))
        assert {n: v for n, v in components.items() if n not in WORKSPACE} == expected
        assert set(components) >= WORKSPACE
        assert "pywin32" not in components
        assert ("async-timeout" in components) == (full == "3.11.2")
    # Without a target: the whole locked set, every platform.
    every = _components(whole)
    assert {"pywin32", "async-timeout"} <= set(every)
    assert set(every) - WORKSPACE == {r.name for r in reqs}


def test_dropped_components_leave_no_dangling_dependency(image_sbom: bytes) -> None:
    data = json.loads(image_sbom)
    refs = {c["bom-ref"] for c in data["components"]} | {data["metadata"]["component"]["bom-ref"]}
    for dep in data["dependencies"]:
        assert dep["ref"] in refs
        assert set(dep.get("dependsOn", [])) <= refs, dep["ref"]


def test_cli_cuts_the_lock_sbom_for_this_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole: bytes
) -> None:
    """What the Nix build runs with the image's venv: this interpreter's SBOM."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = tmp_path / "out" / "sbom.cdx.json"
    args = ["image", "--input", str(ROOT / sbom.LOCK_SBOM), "--output", str(out)]
    assert sbom.main(args) == 0
    here = wheelhouse.current_target()
    assert here.markers["python_full_version"] == platform.python_version()
    assert out.read_bytes() == sbom.for_target(whole, here, 1_700_000_000)
    assert json.loads(out.read_bytes())["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
