"""The stand-in remote of tests/remote (registry, basic-auth server), shared with these tests."""

from tests.remote.conftest import registry, remote

__all__ = ["registry", "remote"]
