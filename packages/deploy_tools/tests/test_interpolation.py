"""`${NAME}` substitution in setup files."""

from __future__ import annotations

import pytest

from deploy_tools.interpolation import MissingEnvError, interpolate


def test_values_defaults_and_nesting() -> None:
    env = {"BASE": "http://127.0.0.1:9"}
    value = {"a": ["${BASE}/x.csv", {"b": "${NOPE:-fallback}"}], "n": 3, "empty": "${E:-}"}
    assert interpolate(value, env) == {
        "a": ["http://127.0.0.1:9/x.csv", {"b": "fallback"}],
        "n": 3,
        "empty": "",
    }


def test_missing_variable_names_it_and_the_key() -> None:
    with pytest.raises(
        MissingEnvError, match=r"value\[1\]\.url: environment variable BASE is not set"
    ):
        interpolate({"value": [{}, {"url": "${BASE}/x"}]}, {}, "")
