"""Layer scan of the saved worker image: only what the worker needs, nothing private."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from deploy_tools.image.build import BuildResult
from deploy_tools.image.scan import LayerScan

Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def _dev_only_names(root: Path) -> set[NormalizedName]:
    """Dev dependency-group names that are not runtime dependencies (from pyproject + uv.lock)."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    dev = {canonicalize_name(Requirement(r).name) for r in data["dependency-groups"]["dev"]}
    runtime = subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes",
         "--no-header", "--no-annotate"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    names = {
        canonicalize_name(re.split(r"[=;\s]", line)[0]) for line in runtime.splitlines() if line
    }
    return dev - names


def test_no_tests_in_our_layers(layer_scan: LayerScan, base_layers: int) -> None:
    # The base's own stdlib (Debian ships usr/lib/python3.11/test) is not ours to judge.
    ours = [p for p, layer in layer_scan.paths.items() if layer >= base_layers]
    assert any(p.startswith("opt/venv/") for p in ours)
    # deploy_tools' project templates hold a test *template* (.j2) for new projects: not a suite
    suites = [p for p in ours if re.search(r"(^|/)tests(/|$)", p)]
    assert [p for p in suites if "/deploy_tools/templates/" not in p] == []
    assert all(p.endswith(("/tests", ".py.j2")) for p in suites)
    our_code = re.compile(
        r"^(app/|opt/venv/lib/python[^/]+/site-packages/(pipeline_core|flows_alpha|deploy_tools)/)"
    )
    ours_code = [p for p in ours if our_code.search(p)]
    assert any(p.endswith("flows_alpha/pipeline.py") for p in ours_code)
    assert [p for p in ours_code if re.search(r"(^|/)(conftest|test_[^/]*)\.py$", p)] == []


def test_no_dev_dependencies(layer_scan: LayerScan, repo_root: Path) -> None:
    dev = _dev_only_names(repo_root)
    assert {"pytest", "ruff", "mypy"} <= dev
    dist_infos = {
        canonicalize_name(m.group(1))
        for p in layer_scan.paths
        if (m := re.search(r"site-packages/([^/]+?)-[^/-]+\.dist-info/?$", p))
    }
    assert "prefect" in dist_infos  # the scan sees the venv at all
    assert dist_infos & dev == set()
    assert "pip" not in dist_infos  # the installer venv stays in the build stage


def test_no_git_env_or_private_key(layer_scan: LayerScan) -> None:
    assert [p for p in layer_scan.paths if re.search(r"(^|/)\.git(/|$)", p)] == []
    assert [p for p in layer_scan.paths if re.search(r"(^|/)\.env$", p)] == []
    assert layer_scan.private_keys == []


def test_no_workspace_sources_or_caches(layer_scan: LayerScan) -> None:
    assert not any(
        p.startswith(("app/packages", "app/.venv", "app/tests")) for p in layer_scan.paths
    )
    assert not any(
        re.search(r"(^|/)(\.pytest_cache|\.mypy_cache|\.ruff_cache|\.cache/pip)(/|$)", p)
        for p in layer_scan.paths
    )
    assert "app/pyproject.toml" in layer_scan.paths  # the [tool.airnub] table, for `airnub`
    # Only YAML under /app/deploy.
    deploy = [p for p in layer_scan.paths if p.startswith("app/deploy/") and not p.endswith("/")]
    files = [p for p in deploy if "." in p.rsplit("/", 1)[-1]]
    assert files
    assert all(p.endswith((".yaml", ".yml")) for p in files)


def test_bytecode_is_hash_based(run_in_image: Run) -> None:
    # Flags word of a PEP 552 .pyc: 0 = timestamp-based (non-deterministic), 1/3 = hash-based.
    proc = run_in_image(
        "python", "-c",
        "import glob, flows_alpha, os;"
        "d = os.path.dirname(flows_alpha.__file__);"
        "fs = glob.glob(d + '/__pycache__/*.pyc');"
        "print(len(fs), sorted({int.from_bytes(open(f, 'rb').read()[4:8], 'little') for f in fs}))",
    )  # fmt: skip
    count, flags = proc.stdout.split(" ", 1)
    assert int(count) > 0, proc.stdout + proc.stderr
    assert flags.strip() in {"[1]", "[3]"}, proc.stdout


def test_oci_labels_without_timestamps(worker_image: BuildResult, repo_root: Path) -> None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", worker_image.tag],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    labels = json.loads(proc.stdout)
    assert {"source", "revision", "version"} <= {
        k.removeprefix("org.opencontainers.image.") for k in labels
    }
    revision = labels["org.opencontainers.image.revision"]
    # The commit the image was built from (HEAD may have moved on since).
    known = subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=repo_root)
    assert known.returncode == 0, revision
    assert not any("created" in k or "date" in k for k in labels)
