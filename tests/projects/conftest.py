"""Shared with these tests: the stand-in remote of tests/remote (registry, basic-auth server)
and the stubbed flake of tests/nix (Nix's own evaluator, offline)."""

from tests.nix.conftest import flake_input_names, nix_cli, stubbed_flake
from tests.remote.conftest import registry, remote

__all__ = ["flake_input_names", "nix_cli", "registry", "remote", "stubbed_flake"]
