"""Dockerfile.worker rules that keep builds reproducible and offline, and the entrypoint script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

from deploy_tools.image.build import ENTRYPOINT, _normalise, default_base_image

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile.worker"


def test_base_image_is_pinned_by_digest() -> None:
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", default_base_image(DOCKERFILE))


def test_nothing_that_breaks_reproducibility_or_pulls() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax=", text, re.MULTILINE)  # would pull a frontend image
    assert "--link" not in text  # COPY --link conflicts with rewrite-timestamp
    assert "apt-get" not in text  # no apt caches, no network
    assert "--no-compile" in text
    assert "unchecked-hash" in text
    # Simple literal lines a Nix image mirrors: JSON exec form, one ENV KEY=value per line.
    for line in text.splitlines():
        if line.startswith(("ENTRYPOINT", "CMD")):
            json.loads(line.split(" ", 1)[1])
        if line.startswith("ENV "):
            assert re.fullmatch(r"ENV [A-Z_]+=\S+", line), line
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user == ["10001:10001"]


def _run_entrypoint(tmp_path: Path, *args: str) -> str:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    for name in ("prefect", "other"):
        script = fake / name
        script.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    proc = subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_entrypoint_starts_the_worker_or_runs_the_command(tmp_path: Path) -> None:
    assert _run_entrypoint(tmp_path) == "prefect worker start"
    assert _run_entrypoint(tmp_path, "--pool", "p") == "prefect worker start --pool p"
    assert _run_entrypoint(tmp_path, "prefect", "flow-run", "execute") == "prefect flow-run execute"
    assert _run_entrypoint(tmp_path, "other", "-x") == "other -x"


def test_normalise_fixes_times_and_modes(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.yaml").write_text("a: 1")
    (tmp_path / "d" / "f.yaml").chmod(0o600)
    _normalise(tmp_path, 1_000_000)
    for path in [tmp_path, tmp_path / "d", tmp_path / "d" / "f.yaml"]:
        assert path.stat().st_mtime == 1_000_000
    assert (tmp_path / "d" / "f.yaml").stat().st_mode & 0o777 == 0o644


def test_no_shared_build_file_names_a_workspace_member() -> None:
    """Dockerfile.worker, nix/ and ci/ find the members themselves (wheels/workspace, uv.lock,
    the SBOM): none names one, so a new project needs no edit there. deploy_tools is the
    exception that runs the build steps (`python -m deploy_tools.image.…`)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    members = [p for p in lock["package"] if p["source"].get("editable", ".") != "."]
    assert len(members) >= 2  # the generic pipeline_core and deploy_tools, whatever projects exist
    names: set[str] = set()
    for p in members:
        if p["name"] == "airnub-deploy-tools":
            continue
        folder = Path(p["source"]["editable"]).name
        names |= {p["name"], p["name"].replace("-", "_"), folder}
    files = [
        DOCKERFILE,
        *sorted((ROOT / "nix").rglob("*.nix")),
        *sorted((ROOT / "ci").glob("*.py")),
    ]
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in sorted(names)
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", path.read_text())
    ]
    assert found == []
