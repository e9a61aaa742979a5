"""Offline wiring checks: the flake evaluated with every input replaced by a recording stub.

These prove what the flake passes to uv2nix, pyproject.nix and nix2container (workspace root,
venv spec, image config and layers, dev shell). They do not build anything: that the venv
and image really build needs network access to nixpkgs (see docs/nix.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy_tools.image import sbom
from deploy_tools.settings import workspace_members

if TYPE_CHECKING:
    from conftest import Flake

pytestmark = pytest.mark.nix

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("x86_64-linux", "aarch64-linux")


def _dockerfile_final_stage(path: Path) -> dict[str, Any]:
    """ENTRYPOINT, CMD, USER, WORKDIR, ENV, LABELs and ARGs of the last stage of a Dockerfile."""
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
            stage = {"Env": {}, "Labels": {}, "Args": {}}
        elif instruction == "ARG" and "Args" in stage:  # not the global ARGs before FROM
            name, _, default = rest.strip().partition("=")
            stage["Args"][name] = default or None
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


def _root_extras() -> dict[str, list[str]]:
    """Distribution name -> the extras the workspace root's dependencies ask of it."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    extras: dict[str, set[str]] = {}
    for line in root["project"].get("dependencies", []):
        req = Requirement(line)
        extras.setdefault(canonicalize_name(req.name), set()).update(req.extras)
    return {name: sorted(e) for name, e in extras.items()}


def _expected_spec(members: dict[str, Path]) -> dict[str, list[str]]:
    """The worker venv's spec: every member, with the extras the root asks of it."""
    extras = _root_extras()
    return {name: extras.get(name, []) for name in members}


def test_flake_outputs_cover_both_linux_systems(stubbed_flake: Flake) -> None:
    show = json.loads(stubbed_flake.run("flake", "show", "--json"))
    for system in SYSTEMS:
        assert {"worker-venv", "worker-image"} <= set(show["packages"][system])
        assert "default" in show["devShells"][system]
        assert set(show["apps"][system]) == {"copy-to-docker", "copy-to-registry"}
        assert set(show["checks"][system]) == {"worker-venv-imports", "worker-image", "dev-shell"}


def test_flake_check_evaluates_every_output_with_stub_inputs(stubbed_flake: Flake) -> None:
    stubbed_flake.run("flake", "check", "--no-build")


def test_checks_build_the_dev_shell_and_its_editable_venv(stubbed_flake: Flake) -> None:
    check = stubbed_flake.eval_json("checks.x86_64-linux.dev-shell.drvPath")
    shell = stubbed_flake.eval_json("devShells.x86_64-linux.default.drvPath")
    venv = stubbed_flake.eval_json(
        "devShells.x86_64-linux.default.stub.packages", apply="ps: (builtins.head ps).stub.name"
    )
    assert check == shell
    assert venv == "airnub-dev-venv"


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
    assert set(config["Labels"]) == set(dockerfile["Labels"])
    title = "org.opencontainers.image.title"
    assert config["Labels"][title] == dockerfile["Labels"][title]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_worker_image_labels_are_the_values_image_build_gives_dockerfile_worker(
    stubbed_flake: Flake,
) -> None:
    from deploy_tools.image.build import project_version
    from deploy_tools.settings import AirnubSettings

    dockerfile = _dockerfile_final_stage(REPO_ROOT / "Dockerfile.worker")
    labels = stubbed_flake.eval_json("packages.x86_64-linux.worker-image.stub.config.Labels")
    prefix = "org.opencontainers.image."
    # Dockerfile.worker: LABEL <prefix>source="${SOURCE}" etc.; `airnub image build` passes
    # VERSION (root project version), REVISION (git HEAD) and SOURCE (settings.image_source).
    args = {
        key.removeprefix(prefix): value.strip("${}")
        for key, value in dockerfile["Labels"].items()
        if value.startswith("${")
    }
    assert args == {"source": "SOURCE", "revision": "REVISION", "version": "VERSION"}
    assert labels[prefix + "version"] == project_version(REPO_ROOT)
    # The source is defined once, [tool.airnub] image_source; without it no build invents one
    # (the settings' default is empty, the Dockerfile's ARG has none, Nix falls back to "").
    assert AirnubSettings.model_fields["image_source"].default == ""
    assert dockerfile["Args"]["SOURCE"] is None
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert labels[prefix + "source"] == pyproject["tool"]["airnub"]["image_source"]
    # With overridden inputs Nix (2.8) gives `self` no rev: the real revision is checked below.
    head = _git("rev-parse", "HEAD")
    assert labels[prefix + "revision"] in (head, f"{head}-dirty", "unknown")


def test_the_revision_label_is_the_commit_git_has_checked_out(nix_cli: str) -> None:
    """nix/image-labels.nix with the flake's real `self` (no input is fetched for it)."""
    expr = (
        f'let self = builtins.getFlake "git+file://{REPO_ROOT}"; in '
        f"(import {REPO_ROOT}/nix/image-labels.nix {{ inherit self; root = self.outPath; }})"
        ".revision"
    )
    proc = subprocess.run(
        [nix_cli, "eval", "--impure", "--raw", "--expr", expr],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    head = _git("rev-parse", "HEAD")
    # Nix sees the tree as git does: committed => the commit; else "<commit>-dirty" or "unknown".
    if _git("status", "--porcelain", "--untracked-files=no"):
        assert proc.stdout in (f"{head}-dirty", "unknown")
    else:
        assert proc.stdout == head


def test_worker_venv_is_built_from_every_workspace_member_of_uv_lock(
    stubbed_flake: Flake,
) -> None:
    venv = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.stub")
    members = _workspace_members()

    # Every member (nix/workspace.nix names none), with the extras the root asks of it.
    assert venv["spec"] == _expected_spec(members)
    asked = {name: extras for name, extras in venv["spec"].items() if extras}
    assert asked  # the root asks for an extra (airnub-pipeline-core[aws]): it is followed
    for name, extras in asked.items():
        optional = tomllib.loads((members[name] / "pyproject.toml").read_text())["project"]
        assert set(extras) <= set(optional["optional-dependencies"]), name
    # pyproject-build-systems' wheel overlay, as uv2nix's templates use (its default is sdist).
    assert venv["buildSystems"] == "wheel"
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
    assert spec == _expected_spec(_workspace_members())  # no dev group extra either


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
    spec = _expected_spec(members)
    direct: set[str] = set()
    for package in lock["package"]:
        if package["name"] in members:
            optional = package.get("optional-dependencies", {})
            deps = package.get("dependencies", []) + [
                d for extra in spec[package["name"]] for d in optional.get(extra, [])
            ]
            direct |= {d["name"] for d in deps if d["name"] not in members and "marker" not in d}

    assert len(layers) == 3
    assert python.startswith("python3-3.11")
    assert set(deps_spec) == direct
    assert layers[2]["deps"] == [venv]
    # Each layer leaves out what the layers below it already hold.
    assert layers[1]["below"] == [layers[0]["out"]]
    assert layers[2]["below"] == [layers[0]["out"], layers[1]["out"]]
    assert len({layer["out"] for layer in layers}) == 3


def test_worker_image_root_is_one_path_with_the_entrypoint_users_certificates_and_venv(
    stubbed_flake: Flake,
) -> None:
    stub = "packages.x86_64-linux.worker-image.stub"
    roots = stubbed_flake.eval_json(
        f"{stub}.copyToRoot", apply="rs: map (r: { inherit (r) name; out = r.outPath; }) rs"
    )
    # What the image's top layer holds (the stub walks the root as nix2container does).
    files = stubbed_flake.eval_json(f"{stub}.layerFiles")
    venv = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.outPath")

    assert [r["name"] for r in roots] == ["airnub-worker-root"]
    assert all(f["src"].startswith(roots[0]["out"] + "/") for f in files.values())
    assert files["/usr/local/bin/airnub-entrypoint"]["mode"] == "-r-xr-xr-x"
    entrypoint = REPO_ROOT / "packages/deploy_tools/src/deploy_tools/image/entrypoint.sh"
    assert files["/usr/local/bin/airnub-entrypoint"]["size"] == entrypoint.stat().st_size
    assert files["/opt/venv"]["target"] == venv
    passwd = stubbed_flake.eval_json(
        f"{stub}.copyToRoot",
        apply='rs: (builtins.head (builtins.filter (e: e.path == "etc/passwd") '
        "(builtins.head rs).entries)).text",
    )
    assert "airnub:x:10001:10001:airnub:/home/airnub:/usr/sbin/nologin" in passwd.splitlines()
    for name in ("ca-certificates.crt", "ca-bundle.crt"):
        assert files[f"/etc/ssl/certs/{name}"]["target"].endswith(
            "-cacert-stub/etc/ssl/certs/ca-bundle.crt"
        )
    assert files["/bin"]["target"].endswith("-airnub-worker-bin/bin")
    assert files["/usr/bin/env"]["target"].endswith("-coreutils-stub/bin/env")
    # /app as in the Docker context: deploy/*.yaml|yml, pyproject.toml, an empty data folder.
    deploy = {
        str(p.relative_to(REPO_ROOT))
        for p in (REPO_ROOT / "deploy").rglob("*")
        if p.is_file() and p.suffix in {".yaml", ".yml"}
    }
    assert {
        k.removeprefix("/app/")
        for k, f in files.items()
        if k.startswith("/app/deploy/") and f["mode"].startswith("-")
    } == deploy
    assert files["/app/pyproject.toml"]["size"] == (REPO_ROOT / "pyproject.toml").stat().st_size
    # Each member's pyproject.toml only (a project's own table), as in the Docker context.
    members = {
        f"/app/{m.relative_to(REPO_ROOT)}/pyproject.toml": m for m in workspace_members(REPO_ROOT)
    }
    assert {
        k for k in files if k.startswith("/app/packages/") and files[k]["mode"][0] == "-"
    } == set(members)
    for path, member in members.items():
        assert files[path]["size"] == (member / "pyproject.toml").stat().st_size
    for folder in ("/app/data", "/home/airnub/.prefect", "/tmp"):
        assert files[folder]["mode"].startswith("d")


def test_worker_image_sbom_is_written_from_the_image_venv_and_uv_lock(
    stubbed_flake: Flake, tmp_path: Path
) -> None:
    """/app/sbom.cdx.json: written at build time by the worker venv, of itself, with uv.lock's
    hashes: the command Dockerfile.worker runs on its venv. Nothing committed is read.

    The command the root runs is run here with this interpreter and its venv in the worker
    venv's place (the stubs build nothing): it writes what the generator gives for this venv.
    """
    stub = "packages.x86_64-linux.worker-image.stub"
    files = stubbed_flake.eval_json(f"{stub}.layerFiles")
    assert files["/app/sbom.cdx.json"]["mode"] == "-r--r--r--"
    run = stubbed_flake.eval_json(
        f"{stub}.copyToRoot",
        apply='rs: (builtins.head (builtins.filter (e: e.path == "app/sbom.cdx.json") '
        "(builtins.head rs).entries)).run",
    )
    venv = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.outPath")
    match = re.fullmatch(
        rf"{re.escape(venv)}/bin/python -m deploy_tools\.image\.sbom "
        rf"--lock (/nix/store/[a-z0-9]{{32}}-uv\.lock) --venv {re.escape(venv)} "
        r'--output "\$dest"',
        run,
    )
    assert match is not None, run
    assert Path(match[1]).read_bytes() == (REPO_ROOT / "uv.lock").read_bytes()
    dest = tmp_path / "sbom.cdx.json"
    here = run.replace(f"{venv}/bin/python", sys.executable).replace(venv, sys.prefix)
    subprocess.run(["bash", "-c", here], env={**os.environ, "dest": str(dest)}, check=True)
    assert dest.read_bytes() == sbom.generate(Path(sys.prefix), REPO_ROOT / "uv.lock")


def test_the_venv_check_imports_every_member_with_its_extras(stubbed_flake: Flake) -> None:
    """checks.worker-venv-imports: `members check` with every member of the spec (none named
    in nix/checks), each with the extras the root asks of it."""
    script = stubbed_flake.eval_json("checks.x86_64-linux.worker-venv-imports.stub.script")
    venv = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.outPath")
    line = next(x for x in script.splitlines() if "deploy_tools.image.members check" in x)
    command, _, args = line.strip().partition(" check ")
    assert command == f"{venv}/bin/python -m deploy_tools.image.members"
    specs = {str(Requirement(a)) for a in shlex.split(args)}
    expected = _expected_spec(_workspace_members())
    assert specs == {
        f"{name}[{','.join(extras)}]" if extras else name for name, extras in expected.items()
    }


def test_worker_image_ownership_and_modes_match_dockerfile_worker(stubbed_flake: Flake) -> None:
    """nix2container applies each perms entry to the files of its path whose store path the
    regex matches (Go regexp, unanchored; the last match wins): the same owners as the Docker
    image (/home/airnub and /app/data the worker's, the rest root's) and /tmp 1777."""
    stub = "packages.x86_64-linux.worker-image.stub"
    files = stubbed_flake.eval_json(f"{stub}.layerFiles")
    perms = stubbed_flake.eval_json(
        f"{stub}.perms", apply="ps: map (p: p // { path = p.path.outPath; }) ps"
    )
    root = stubbed_flake.eval_json(f"{stub}.copyToRoot", apply="rs: (builtins.head rs).outPath")

    assert {p["path"] for p in perms} == {root}
    applied: dict[str, tuple[int, int, str]] = {}
    for dst, f in files.items():
        owner = (0, 0, "")
        for perm in perms:
            if re.search(perm["regex"], f["src"]):
                owner = (perm.get("uid", 0), perm.get("gid", 0), perm.get("mode", ""))
        if owner != (0, 0, ""):
            applied[dst] = owner
    assert applied == {
        "/home/airnub": (10001, 10001, "0755"),
        "/home/airnub/.prefect": (10001, 10001, "0755"),
        "/app/data": (10001, 10001, "0755"),
        "/tmp": (0, 0, "1777"),
    }


def test_worker_image_layers_take_store_paths_only(stubbed_flake: Flake) -> None:
    """Only the image's own root is copied to /: a layer with its own copyToRoot could shadow
    it (nix2container compares files within one layer, never across layers)."""
    roots = stubbed_flake.eval_json(
        "packages.x86_64-linux.worker-image.stub.layers",
        apply="ls: map (l: l.stub.copyToRoot or null) ls",
    )
    assert roots == [None, None, None]


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


def test_a_member_added_under_packages_is_in_the_venv_and_its_check(
    stubbed_flake: Flake, tmp_path: Path
) -> None:
    """No nix file names a member: one added under packages/ (and `uv lock`) of a copy is in
    the worker venv, in its import check and in the dev shell; a virtual member (no package,
    nothing to install) is in neither, as Dockerfile.worker installs none for it."""
    from tests.checkout import git_copy
    from tests.new_member import add_member, lock_and_commit

    copy = git_copy(tmp_path / "copy")
    added = add_member(copy, "flows_zeta")
    virtual = add_member(copy, "notes_zeta", virtual=True)
    lock_and_commit(copy, "add two members")
    flake = dataclasses.replace(stubbed_flake, root=copy)

    spec = flake.eval_json("packages.x86_64-linux.worker-venv.stub.spec")
    before = stubbed_flake.eval_json("packages.x86_64-linux.worker-venv.stub.spec")
    assert spec == {**before, added: []}
    assert virtual not in spec
    package = flake.eval_json(f"packages.x86_64-linux.worker-venv.stub.packages.{added}")
    assert package["source"] == {"editable": "packages/flows_zeta"}
    script = flake.eval_json("checks.x86_64-linux.worker-venv-imports.stub.script")
    assert f"'{added}'" in script
    assert virtual not in script
    shell = flake.eval_json(
        "devShells.x86_64-linux.default.stub",
        apply="s: (builtins.head s.packages).stub.packages",
    )
    assert shell[added]["editable"] is True
