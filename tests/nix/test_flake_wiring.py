"""Offline wiring checks: the flake evaluated with every input replaced by a recording stub.

These prove what the flake passes to uv2nix, pyproject.nix and nix2container (workspace root,
venv spec, image config and layers, dev shell). They do not build anything: that the venv
and image really build needs network access to nixpkgs (see docs/nix.md).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Flake

pytestmark = pytest.mark.nix

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("x86_64-linux", "aarch64-linux")


def _dockerfile_final_stage(path: Path) -> dict[str, Any]:
    """ENTRYPOINT, CMD, USER, WORKDIR, ENV and LABELs of the last stage of a Dockerfile."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stage: dict[str, Any] = {}
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stage = {"Env": {}, "Labels": {}}
        elif instruction in ("ENTRYPOINT", "CMD"):
            stage[instruction.capitalize() if instruction == "CMD" else "Entrypoint"] = json.loads(
                rest
            )
        elif instruction == "USER":
            stage["User"] = rest.strip()
        elif instruction == "WORKDIR":
            stage["WorkingDir"] = rest.strip()
        elif instruction in ("ENV", "LABEL"):
            words = shlex.split(rest)
            pairs = (
                [w.split("=", 1) for w in words]
                if "=" in words[0]
                else [[words[0], " ".join(words[1:])]]
            )
            stage["Env" if instruction == "ENV" else "Labels"].update(dict(pairs))
    return stage


def _workspace_members() -> dict[str, Path]:
    """Distribution name -> directory of every uv workspace member (root pyproject's glob)."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    members: dict[str, Path] = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for pyproject in sorted(REPO_ROOT.glob(f"{pattern}/pyproject.toml")):
            name = tomllib.loads(pyproject.read_text())["project"]["name"]
            members[name] = pyproject.parent
    return members


def test_flake_outputs_cover_both_linux_systems(stubbed_flake: Flake) -> None:
    show = json.loads(stubbed_flake.run("flake", "show", "--json"))
    for system in SYSTEMS:
        assert {"worker-venv", "worker-image"} <= set(show["packages"][system])
        assert "default" in show["devShells"][system]
        assert set(show["apps"][system]) == {"copy-to-docker", "copy-to-registry"}
        assert {"worker-venv-imports", "worker-image"} <= set(show["checks"][system])


def test_flake_check_evaluates_every_output_with_stub_inputs(stubbed_flake: Flake) -> None:
    stubbed_flake.run("flake", "check", "--no-build")


@pytest.mark.parametrize("system", SYSTEMS)
def test_worker_image_config_matches_dockerfile_worker(stubbed_flake: Flake, system: str) -> None:
    dockerfile = _dockerfile_final_stage(REPO_ROOT / "Dockerfile.worker")
    config = stubbed_flake.eval_json(f"packages.{system}.worker-image.stub.config")

    for key in ("Entrypoint", "Cmd", "User", "WorkingDir"):
        assert config[key] == dockerfile[key], key
    nix_env = dict(item.split("=", 1) for item in config["Env"])
    assert nix_env.pop("PATH").startswith(nix_env["VIRTUAL_ENV"] + "/bin:")
    docker_env = dict(dockerfile["Env"])
    docker_env.pop("PATH", None)
    assert nix_env == docker_env
    title = "org.opencontainers.image.title"
    assert config["Labels"][title] == dockerfile["Labels"][title]


def test_worker_venv_is_built_from_the_three_workspace_packages_of_uv_lock(
    stubbed_flake: Flake,
) -> None:
    venv = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.stub")
    members = _workspace_members()
    core = tomllib.loads((members["airnub-pipeline-core"] / "pyproject.toml").read_text())

    assert set(venv["spec"]) == set(members)
    assert venv["spec"]["airnub-pipeline-core"] == ["aws"]
    assert "aws" in core["project"]["optional-dependencies"]
    for name, package in venv["packages"].items():
        # Each came from the uv2nix overlay of this checkout's uv.lock, as a workspace member.
        assert package["source"] == {"editable": str(members[name].relative_to(REPO_ROOT))}
        assert package["sourcePreference"] == "wheel"
        assert package["editable"] is False
        info = package["workspaceInfo"]
        assert (
            info["uvLockSha256"] == hashlib.sha256((REPO_ROOT / "uv.lock").read_bytes()).hexdigest()
        )


def test_worker_venv_has_no_dev_dependencies(stubbed_flake: Flake) -> None:
    spec = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.stub.spec")
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dev_names = {
        shlex.split(req.replace("[", " ").replace(">", " ").replace("=", " "))[0]
        for req in root["dependency-groups"]["dev"]
    }
    assert not dev_names & set(spec)
    assert all(extras in ([], ["aws"]) for extras in spec.values())


def test_worker_image_layers_put_python_then_dependencies_then_the_app(
    stubbed_flake: Flake,
) -> None:
    image = "packages.x86_64-linux.worker-image"
    layers = stubbed_flake.eval_json(
        f"{image}.stub.layers",
        apply="ls: map (l: { deps = map (d: d.outPath) l.stub.deps; "
        "below = map (b: b.outPath) (l.stub.layers or [ ]); out = l.outPath; }) ls",
    )
    python = stubbed_flake.eval_json(
        f"{image}.stub.layers", apply="ls: (builtins.head (builtins.head ls).stub.deps).name"
    )
    venv = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.outPath")
    deps_spec = stubbed_flake.eval_json(
        f"{image}.stub.layers",
        apply="ls: (builtins.head (builtins.elemAt ls 1).stub.deps).stub.spec",
    )
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    members = _workspace_members()
    direct: set[str] = set()
    for package in lock["package"]:
        if package["name"] in members:
            deps = package.get("dependencies", []) + package.get("optional-dependencies", {}).get(
                "aws", []
            )
            direct |= {d["name"] for d in deps if d["name"] not in members and "marker" not in d}

    assert len(layers) == 3
    assert python.startswith("python3-3.11")
    assert set(deps_spec) == direct
    assert layers[2]["deps"] == [venv]
    # Each layer leaves out what the layers below it already hold.
    assert layers[1]["below"] == [layers[0]["out"]]
    assert layers[2]["below"] == [layers[0]["out"], layers[1]["out"]]
    assert len({layer["out"] for layer in layers}) == 3


def test_worker_image_root_has_the_entrypoint_user_and_venv_link(stubbed_flake: Flake) -> None:
    stub = "packages.x86_64-linux.worker-image.stub"
    script = stubbed_flake.eval_json(
        f"{stub}.copyToRoot", apply="rs: (builtins.elemAt rs 1).stub.script"
    )
    perms = stubbed_flake.eval_json(
        f"{stub}.perms", apply='ps: map (p: removeAttrs p [ "path" ]) ps'
    )
    venv = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.outPath")

    assert "$out/usr/local/bin/airnub-entrypoint" in script
    assert f"ln -s {venv} $out/opt/venv" in script
    assert "airnub:x:10001:10001:airnub:/home/airnub:/usr/sbin/nologin" in script
    assert {
        "regex": "/home/airnub.*",
        "mode": "0755",
        "uid": 10001,
        "gid": 10001,
        "uname": "airnub",
        "gname": "airnub",
    } in perms
    assert {"regex": "/tmp", "mode": "1777"} in perms


def test_dev_shell_has_tools_uv_settings_and_editable_workspace(stubbed_flake: Flake) -> None:
    shell = stubbed_flake.eval_json(
        "devShells.x86_64-linux.default.stub",
        apply="s: { inherit (s) env shellHook; packages = map (p: p.name) s.packages; "
        "venv = (builtins.head s.packages).stub; }",
    )
    members = _workspace_members()

    assert shell["env"]["UV_NO_SYNC"] == "1"
    assert shell["env"]["UV_PYTHON_DOWNLOADS"] == "never"
    assert {"hatch-stub", "uv-stub", "docker-client-stub", "skopeo-stub"} <= set(shell["packages"])
    installed = shell["venv"]["packages"]
    assert set(members) <= set(installed)
    for name in members:
        assert installed[name]["editable"] is True
        assert installed[name]["editableRoot"] == "$REPO_ROOT"
        # hatchling needs `editables` to build an editable wheel.
        assert installed[name]["overridden"]["nativeBuildInputs"] == [["editables"]]
    assert "REPO_ROOT=$(git rev-parse --show-toplevel)" in shell["shellHook"]
