"""`${NAME}` / `${NAME:-default}` substitution of environment values into setup files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingEnvError(ValueError):
    """A `${NAME}` placeholder has no value and no default."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"{where}: environment variable {name} is not set (used as ${{{name}}})")
        self.name = name


def interpolate(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace placeholders in every string inside `value` (dicts and lists are walked).

    Raises:
        MissingEnvError: naming the variable and the key path where it was used.

    Example:
        >>> interpolate({"url": "${BASE}/a.csv"}, {"BASE": "http://127.0.0.1:1"})
        {'url': 'http://127.0.0.1:1/a.csv'}
    """
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise MissingEnvError(name, where or "value")

        return _PATTERN.sub(replace, value)
    if isinstance(value, Mapping):
        return {
            k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
