"""Secrets of sources' `auth`, read from Prefect `Secret` blocks at download time."""

from __future__ import annotations

from typing import Any


async def read_secret_block(name: str) -> str:
    """The text held by the Prefect `Secret` block `name` (a `pipeline_core.auth.SecretResolver`).

    The value is returned as stored: unlike `Secret.get()`, text that happens to parse as
    JSON (`"12345"`) is not turned into a number.

    Raises:
        LookupError: no Secret block of that name (the message names it, nothing else).
        TypeError: the block holds JSON rather than text.
    """
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    try:
        block: Secret[Any] = await Secret.aload(name)
    except (ObjectNotFound, ValueError):
        raise LookupError(f"no Prefect Secret block named {name!r}") from None
    value = block.value.get_secret_value()
    if not isinstance(value, str):
        raise TypeError(f"Secret block {name!r} holds {type(value).__name__}, not text")
    return value
