"""Prefect's `{{ $NAME }}` templating in the setup files, with unset variables refused.

Every file under `deploy/` that `setup apply` reads (deployment files, work pools, variables,
blocks) uses the dialect of `prefect deploy`: `{{ $NAME }}` is the environment variable NAME
(quote it in YAML: `directory: "{{ $STACK_PROJECT_DIR }}"`). It is resolved with Prefect's own
`apply_values`, as `prefect deploy` resolves it from `os.environ`, with one difference: Prefect
substitutes an empty text for a variable that is not set; here that is a problem naming the
variable and the key that uses it, and nothing is applied.

There is no default syntax (`${NAME:-default}` is not Prefect's): a block gives its default in
`data` and names the variable in `optional_env`, which wins when it is set.

Example:
    >>> template_problems({"url": "{{ $BASE }}/a.csv"}, {}, "value")
    ['value.url: environment variable BASE is not set (used as {{ $BASE }})']
    >>> render({"url": "{{ $BASE }}/a.csv"}, {"BASE": "http://127.0.0.1:1"})
    {'url': 'http://127.0.0.1:1/a.csv'}
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_OLD = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")  # the former `${NAME:-x}`
_BRACES = re.compile(r"{{.*?}}")
_ENVIRON_LOCK = threading.Lock()


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(key path, text) of every string inside `value` (dicts and lists are walked)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def env_names(value: Any) -> set[str]:
    """The NAME of every `{{ $NAME }}` inside `value`."""
    from prefect.utilities.templating import (
        ENV_VAR_PLACEHOLDER_PREFIX,
        PlaceholderType,
        find_placeholders,
    )

    return {
        p.name.removeprefix(ENV_VAR_PLACEHOLDER_PREFIX)
        for _, text in _strings(value, "")
        for p in find_placeholders(text)
        if p.type is PlaceholderType.ENV_VAR
    }


def template_problems(
    value: Any,
    env: Mapping[str, str],
    where: str,
    *,
    keep_others: Callable[[str], bool] = lambda key: False,
) -> list[str]:
    """A problem for each placeholder in `value` that `render` would not resolve.

    That is a `{{ $NAME }}` whose NAME is not in `env`; any other Prefect placeholder
    (`{{ prefect.blocks.… }}`, `{{ prefect.variables.… }}`, a step output), unless
    `keep_others(key path)` (pull steps: the worker resolves those when the flow run starts,
    as it does for `prefect deploy`); a `{{ … }}` that is no Prefect placeholder; and the former
    `${NAME}` syntax, which is no longer substituted. Each problem starts with its key path.
    """
    from prefect.utilities.templating import (
        ENV_VAR_PLACEHOLDER_PREFIX,
        PLACEHOLDER_CAPTURE_REGEX,
        PlaceholderType,
        find_placeholders,
    )

    problems = []
    for key, text in _strings(value, where):
        placeholders = sorted(find_placeholders(text))
        for p in placeholders:
            if p.type is PlaceholderType.ENV_VAR:
                name = p.name.removeprefix(ENV_VAR_PLACEHOLDER_PREFIX)
                if name not in env:
                    problems.append(
                        f"{key}: environment variable {name} is not set (used as {p.full_match})"
                    )
            elif not keep_others(key):
                problems.append(
                    f"{key}: {p.full_match}: setup apply resolves only environment variables "
                    "here ({{ $NAME }})"
                )
        for odd in _BRACES.findall(PLACEHOLDER_CAPTURE_REGEX.sub("", text)):
            problems.append(
                f"{key}: {odd} is not a placeholder Prefect understands: write {{{{ $NAME }}}} "
                "(no default or filter syntax; a block's default goes in data, see optional_env)"
            )
        for old in _OLD.findall(text):
            problems.append(
                f"{key}: {old} is not substituted: write Prefect's {{{{ $NAME }}}} instead"
            )
    return problems


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in `os.environ` for the duration, then the environment as it was."""
    with _ENVIRON_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def render(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with every `{{ $NAME }}` replaced by `env[NAME]`, by Prefect's `apply_values`.

    A new value (dicts and lists are copied); other placeholders are kept as they are. Check `template_problems` first: a NAME missing
    from `env` is taken from `os.environ`, or else left in place.

    Prefect reads `{{ $NAME }}` from `os.environ` only, while each project's files are read
    with values of their own (its STACK_DATA_ROOT): those are put in `os.environ` for the
    call (under a lock) and the environment is restored after it.
    """
    from prefect.utilities.templating import apply_values

    def walk(v: Any) -> Any:  # each text on its own: YAML may hold dates, which Prefect refuses
        if isinstance(v, str):
            return apply_values(v, {}, remove_notset=False)
        if isinstance(v, Mapping):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    names = env_names(value)
    with _environ({n: env[n] for n in names if n in env}):
        return walk(value)
