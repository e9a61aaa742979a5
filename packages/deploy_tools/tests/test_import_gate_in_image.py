"""The import gate inside the image (`deploy_tools.image.gate`), without Docker: what it lists
for the fixture's projects, its in-container entry point run in this process, and its report
through a stand-in `docker` that runs that entry point here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from deploy_tools.image import gate
from deploy_tools.image.gate import ImportTarget, check_in_image, image_targets
from deploy_tools.local.stack import ComposeStack, Ports, StackError
from deploy_tools.settings import load_settings

ALPHA = "deploy/projects/alpha"


def flows(project: str, where: str, *names: str) -> list[ImportTarget]:
    module = f"airnub_fixture_{project}.flows"
    return [ImportTarget(project, "flow", f"{module}:{n}", where) for n in names]


def test_targets_are_each_project_s_entrypoints_and_demo_data_naming_the_file(
    checkout: Path,
) -> None:
    alpha_demo = ImportTarget(
        "alpha", "module", "airnub_fixture_alpha.demo_data",
        "packages/fixture_alpha/pyproject.toml demo_data",
    )  # fmt: skip
    local = f"{ALPHA}/prefect.local.yaml"
    assert image_targets(load_settings(checkout)) == [
        *flows("alpha", local, "alpha_ingest", "alpha_process", "alpha_pipeline"),
        alpha_demo,
        *flows("beta", "deploy/projects/beta/prefect.local.yaml", "beta_flow"),
    ]


def test_targets_of_given_files_replace_a_project_s_local_file(checkout: Path) -> None:
    settings = load_settings(checkout)
    k8s = settings.project("alpha").deploy_dir / "prefect.k8s.yaml"
    targets = image_targets(settings, {"alpha": [k8s]})
    alpha = [t for t in targets if t.project == "alpha"]
    assert [t.where for t in alpha] == [f"{ALPHA}/prefect.k8s.yaml"] * 3 + [
        "packages/fixture_alpha/pyproject.toml demo_data"
    ]
    # a project not named keeps its local file
    assert [t.where for t in targets if t.project == "beta"] == [
        "deploy/projects/beta/prefect.local.yaml"
    ]


def test_an_unreadable_deploy_file_gives_no_target(checkout: Path) -> None:
    (checkout / ALPHA / "prefect.local.yaml").write_text("deployments: [unclosed\n")
    targets = image_targets(load_settings(checkout))
    assert [t.target for t in targets if t.project == "alpha"] == [
        "airnub_fixture_alpha.demo_data"
    ]  # the host gate and the file checks report that file


def run_main(capsys: pytest.CaptureFixture[str], items: list[dict[str, str]]) -> list[object]:
    assert gate.main([json.dumps(items)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return list(json.loads(out[-1]))


def test_main_imports_every_target_and_prints_no_failure(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [{"kind": t.kind, "target": t.target} for t in image_targets(load_settings(checkout))]
    assert len(items) == 5
    assert run_main(capsys, items) == []


def test_main_names_the_one_module_that_is_missing(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [
        {"kind": "flow", "target": "airnub_fixture_alpha.flows:alpha_ingest"},
        {"kind": "module", "target": "airnub_fixture_alpha.demo_data"},
        {"kind": "module", "target": "airnub_fixture_gone.demo_data"},
    ]
    assert run_main(capsys, items) == [
        {
            "target": "airnub_fixture_gone.demo_data",
            "error": "ModuleNotFoundError: No module named 'airnub_fixture_gone'",
        }
    ]


def test_main_names_a_flow_whose_module_is_missing_or_that_is_no_flow(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [
        {"kind": "flow", "target": "airnub_fixture_gone.flows:alpha_ingest"},
        {"kind": "flow", "target": "airnub_fixture_alpha.demo_data:demo_sources"},
    ]
    failures = run_main(capsys, items)
    assert [f["target"] for f in failures] == [i["target"] for i in items]  # type: ignore[index]
    missing, not_a_flow = (str(f["error"]) for f in failures)  # type: ignore[index]
    assert missing == "ModuleNotFoundError: No module named 'airnub_fixture_gone'"
    assert not_a_flow == (
        "ValueError: airnub_fixture_alpha.demo_data:demo_sources is a function, not a Prefect flow"
    )


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkout: Path) -> Path:
    """A `docker` first on the PATH: `docker run … --entrypoint python IMAGE ARGS` runs
    `python ARGS` here (the fixture's sources on its path), unless the image is `broken`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "args = sys.argv[1:]\n"
        "image = args[args.index('python') + 1]\n"
        "if image == 'broken':\n"
        "    sys.exit('docker: Error response from daemon: No such image: broken')\n"
        f"os.execv({sys.executable!r}, [{sys.executable!r}, *args[args.index(image) + 1:]])\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sources = [str(p) for p in sorted(checkout.glob("packages/*/src"))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*sources, *sys.path]))
    return script


def test_check_in_image_reports_one_line_per_failure_naming_project_and_file(
    checkout: Path, docker: Path
) -> None:
    settings = load_settings(checkout)
    targets = image_targets(settings)
    assert check_in_image("airnub-worker:test", targets) == []
    gone = ImportTarget(
        "beta", "module", "airnub_fixture_gone", "packages/x/pyproject.toml demo_data"
    )
    assert check_in_image("airnub-worker:test", [*targets, gone]) == [
        "project beta: airnub_fixture_gone (packages/x/pyproject.toml demo_data) does not import "
        "in airnub-worker:test: ModuleNotFoundError: No module named 'airnub_fixture_gone'"
    ]


def test_a_gate_that_cannot_run_says_so_quoting_docker(checkout: Path, docker: Path) -> None:
    targets = image_targets(load_settings(checkout))
    with pytest.raises(RuntimeError, match=r"did not run in broken:\n.*No such image: broken"):
        check_in_image("broken", targets)
    assert check_in_image("broken", []) == []  # nothing to check: docker is not asked


def test_compose_up_stops_at_an_image_that_lacks_a_module(checkout: Path, docker: Path) -> None:
    path = checkout / "packages" / "fixture_alpha" / "pyproject.toml"
    path.write_text(path.read_text().replace('"airnub_fixture_alpha.demo_data"', '"airnub_gone"'))
    stack = ComposeStack(load_settings(checkout), Ports(4300, 8800))
    with pytest.raises(StackError) as caught:
        stack.check_image()
    text = str(caught.value)
    assert text.startswith("the worker image lacks what the deployments need (nothing was started)")
    assert "project alpha: airnub_gone (packages/fixture_alpha/pyproject.toml demo_data)" in text
    assert text.endswith("rebuild it with `airnub deploy local --build` after `uv lock`")


def test_file_entrypoints_of_pulled_code_are_left_to_the_host_gate(checkout: Path) -> None:
    """prefect.s3.yaml pulls its code at run time: its file-path entrypoint is not expected in
    the image; the same entrypoint in a file that pulls nothing is (it would fail every run)."""
    settings = load_settings(checkout)
    alpha = settings.project("alpha")
    s3 = alpha.deploy_dir / "prefect.s3.yaml"
    pulled = [t.target for t in image_targets(settings, {"alpha": [s3], "beta": []})]
    assert not [t for t in pulled if ".py:" in t], pulled
    baked = alpha.deploy_dir / "baked.yaml"
    baked.write_text(
        "pull:\n  - prefect.deployments.steps.set_working_directory: {directory: /app}\n"
        "deployments:\n  - {name: x, entrypoint: 'flows/file.py:f'}\n"
    )
    targets = image_targets(settings, {"alpha": [baked], "beta": []})
    assert [t.target for t in targets if t.kind == "flow"] == ["flows/file.py:f"]
