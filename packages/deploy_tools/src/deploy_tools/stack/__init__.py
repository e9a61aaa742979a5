"""The local Prefect stack: the `Stack` interface, the process implementation, mode selection.

Names are imported on first use, so `airnub --help` (which needs only `Mode`) stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy_tools.stack.interface import PARTS, PartLog, PartStatus, Stack, StackError
    from deploy_tools.stack.mode import Mode, ModeNotAvailableError, open_stack, resolve_mode
    from deploy_tools.stack.ports import PortInUseError
    from deploy_tools.stack.process import Ports, ProcessStack

_WHERE = {
    "PARTS": "interface",
    "PartLog": "interface",
    "PartStatus": "interface",
    "Stack": "interface",
    "StackError": "interface",
    "Mode": "mode",
    "ModeNotAvailableError": "mode",
    "open_stack": "mode",
    "resolve_mode": "mode",
    "PortInUseError": "ports",
    "Ports": "process",
    "ProcessStack": "process",
}


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "PARTS",
    "Mode",
    "ModeNotAvailableError",
    "PartLog",
    "PartStatus",
    "PortInUseError",
    "Ports",
    "ProcessStack",
    "Stack",
    "StackError",
    "open_stack",
    "resolve_mode",
]
