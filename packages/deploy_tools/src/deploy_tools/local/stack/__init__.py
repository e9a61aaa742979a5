"""The local Prefect stack: the `Stack` interface, its process and compose implementations, modes.

Names are imported on first use, so `airnub --help` (which needs only `Mode`) stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy_tools.local.stack.compose import ComposeStack
    from deploy_tools.local.stack.interface import PARTS, PartLog, PartStatus, Stack, StackError
    from deploy_tools.local.stack.mode import (
        Mode,
        RunningMode,
        open_stack,
        resolve_mode,
        running_stack,
    )
    from deploy_tools.local.stack.ports import PortInUseError, Ports
    from deploy_tools.local.stack.process import ProcessStack

_WHERE = {
    "PARTS": "interface",
    "PartLog": "interface",
    "PartStatus": "interface",
    "Stack": "interface",
    "StackError": "interface",
    "Mode": "mode",
    "RunningMode": "mode",
    "open_stack": "mode",
    "resolve_mode": "mode",
    "running_stack": "mode",
    "PortInUseError": "ports",
    "Ports": "ports",
    "ComposeStack": "compose",
    "ProcessStack": "process",
}


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "PARTS",
    "ComposeStack",
    "Mode",
    "PartLog",
    "PartStatus",
    "PortInUseError",
    "Ports",
    "ProcessStack",
    "RunningMode",
    "Stack",
    "StackError",
    "open_stack",
    "resolve_mode",
    "running_stack",
]
