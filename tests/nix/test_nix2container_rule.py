"""The stub nix2container enforces nix2container's duplicate-path rule (its nix/graph.go).

nix2container builds each layer's tar from a graph of paths; a path that a second store path
provides again with another mode, another size (regular files) or another perms list fails the
build with the messages checked here. The stub applies the same rule when the image is
evaluated, so `tests/nix` fails on such an image before a networked build would. The fixtures
(`fixtures/duplicate-paths.nix`) include the worker image's root as it was before issue 13.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Flake

pytestmark = pytest.mark.nix

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STORE = r"/nix/store/[a-z0-9]{32}-"


def _evaluate(case: str, nix_cli: str) -> subprocess.CompletedProcess[str]:
    """`.drvPath` of one fixture image, with the stub nixpkgs and nix2container."""
    expr = f"""
      let
        stub = name: (import {HERE}/stubs/${{name}}/flake.nix).outputs {{ self = null; }};
        pkgs = (stub "nixpkgs").legacyPackages.x86_64-linux;
        nix2container = (stub "nix2container").packages.x86_64-linux.nix2container;
        mkRoot = import {REPO_ROOT}/nix/packages/mk-root.nix {{ inherit (pkgs) runCommand; }};
        cases = import {HERE}/fixtures/duplicate-paths.nix {{ inherit pkgs nix2container mkRoot; }};
      in
      cases.{case}.drvPath
    """
    return subprocess.run(
        [nix_cli, "eval", "--impure", "--raw", "--expr", expr],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        # The worker image before issue 13: buildEnv's /etc (a link to cacert's) + rootfs' /etc.
        (
            "overlapping-etc",
            rf"the file '/etc' already exists in the graph with mode 'Lrwxrwxrwx' from "
            rf"'{STORE}airnub-worker-base-tools/etc' while it is added again with mode "
            rf"'dr-xr-xr-x' by '{STORE}airnub-worker-rootfs/etc'",
        ),
        (
            "overlapping-etc-in-a-layer",
            r"the file '/etc' already exists in the graph with mode 'Lrwxrwxrwx' from ",
        ),
        (
            "same-etc-other-perms",
            r"the file '/etc' already exists in the tar with perms \[\]types\.Perm\(nil\) but is "
            r"overridden with perms \[\]types\.Perm\{types\.Perm\{Regex:\"/etc/scratch\$\", "
            r"Mode:\"1777\", Uid:0, Gid:0, Uname:\"\", Gname:\"\"\}\}",
        ),
        (
            "same-file-other-size",
            rf"the file '/etc/passwd' already exists in the graph with size '30' from "
            rf"'{STORE}users/etc/passwd' while it is added again with size '40' by "
            rf"'{STORE}other-users/etc/passwd'",
        ),
    ],
)
def test_a_path_provided_twice_differently_fails_with_nix2containers_message(
    nix_cli: str, case: str, message: str
) -> None:
    proc = _evaluate(case, nix_cli)
    assert proc.returncode != 0, proc.stdout
    assert re.search(message, proc.stderr), proc.stderr


@pytest.mark.parametrize("case", ["same-file-same-size", "overlap-across-layers"])
def test_what_nix2container_accepts_the_stub_accepts(nix_cli: str, case: str) -> None:
    proc = _evaluate(case, nix_cli)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(".drv")


def test_the_worker_image_with_its_one_root_passes_the_rule(stubbed_flake: Flake) -> None:
    """Its drvPath evaluates (the rule runs then) and the top layer holds /etc from one path."""
    image = "packages.x86_64-linux.worker-image"
    assert stubbed_flake.eval_json(f"{image}.drvPath").endswith(".drv")
    files = stubbed_flake.eval_json(f"{image}.stub.layerFiles")
    assert files["/etc"]["mode"] == "dr-xr-xr-x"
    assert {"/etc/passwd", "/etc/group", "/etc/ssl/certs/ca-certificates.crt", "/tmp"} <= set(files)
