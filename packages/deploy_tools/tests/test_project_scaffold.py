"""`create_project`: refusals write nothing; a scaffold renders clean code and registers it.

Each test runs in a small git checkout holding copies of the workspace's own
pyproject.toml, hatch.toml and uv.lock.
"""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from deploy_tools.project_scaffold import ScaffoldError, create_project

REPO = Path(__file__).resolve().parents[3]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "packages" / "flows_alpha").mkdir(parents=True)
    (root / "deploy").mkdir()
    (root / "packages" / "flows_alpha" / "README.md").write_text("alpha\n")
    (root / "deploy" / "README.md").write_text("deploy\n")
    for name in ("pyproject.toml", "hatch.toml", "uv.lock"):
        shutil.copy(REPO / name, root / name)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "seed")
    return root


def state(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


@pytest.mark.parametrize("name", ["Beta", "1beta", "class", "be-ta", "", "b" * 40, "beta/../x"])
def test_invalid_name_is_refused_and_nothing_written(checkout: Path, name: str):
    before = state(checkout)
    with pytest.raises(ScaffoldError, match="invalid project name"):
        create_project(checkout, name, lock=False)
    assert state(checkout) == before


def test_taken_name_is_refused(checkout: Path):
    before = state(checkout)
    with pytest.raises(ScaffoldError, match="exists already"):
        create_project(checkout, "alpha", lock=False)
    assert state(checkout) == before


def test_dirty_target_is_refused_naming_the_file(checkout: Path):
    (checkout / "hatch.toml").write_text((checkout / "hatch.toml").read_text() + "\n# edit\n")
    before = state(checkout)
    with pytest.raises(ScaffoldError, match=r"uncommitted changes \(hatch.toml\)"):
        create_project(checkout, "beta", lock=False)
    assert state(checkout) == before


def test_failed_lock_puts_everything_back(checkout: Path, monkeypatch: pytest.MonkeyPatch):
    before = state(checkout)
    monkeypatch.setenv("PATH", str(checkout / "no-bin"))  # no uv, no git on the PATH...
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(
        "deploy_tools.project_scaffold.check_clean", lambda _root: None
    )  # ...so skip the git check, which needs git
    with pytest.raises(ScaffoldError, match="uv is not installed"):
        create_project(checkout, "beta")
    assert state(checkout) == before


def test_scaffold_renders_clean_code_and_registers_it(checkout: Path):
    written = create_project(checkout, "sales_eu", lock=False)
    package = checkout / "packages" / "flows_sales_eu"
    assert (package / "src/flows_sales_eu/flows.py") in {checkout / p for p in written}
    for source in package.rglob("*.py"):
        py_compile.compile(str(source), doraise=True)
    flows = (package / "src/flows_sales_eu/flows.py").read_text()
    assert '@sources_flow("sales_eu_pipeline")' in flows
    assert (
        "class SalesEuSettings(PipelineSettings)"
        in (package / "src/flows_sales_eu/settings.py").read_text()
    )
    assert 'env_prefix="SALES_EU_"' in (package / "src/flows_sales_eu/settings.py").read_text()
    meta = tomllib.loads((package / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "airnub-flows-sales-eu"
    assert meta["project"]["version"] == "0.1.0"
    root = tomllib.loads((checkout / "pyproject.toml").read_text())
    assert "airnub-flows-sales-eu" in root["project"]["dependencies"]
    assert root["tool"]["uv"]["sources"]["airnub-flows-sales-eu"] == {"workspace": True}
    entry = root["tool"]["airnub"]["projects"][-1]
    assert entry["name"] == "sales_eu" and entry["demo_deployment"] == "sales_eu_pipeline/local"
    assert "flows_sales_eu" in root["tool"]["mypy"]["packages"]
    hatch = tomllib.loads((checkout / "hatch.toml").read_text())
    assert "packages/flows_sales_eu" in hatch["envs"]["default"]["workspace"]["members"]
    deploy = (checkout / "deploy/projects/sales_eu/prefect.local.yaml").read_text()
    assert "entrypoint: flows_sales_eu.flows:pipeline" in deploy
    ruff = shutil.which("ruff") or str(Path(os.__file__).parent / "ruff")
    done = subprocess.run(
        [ruff, "check", "--config", str(checkout / "pyproject.toml"), str(package)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
