"""The local Prefect stack: the `Stack` interface, the process implementation, mode selection."""

from deploy_tools.stack.interface import PARTS, PartLog, PartStatus, Stack, StackError
from deploy_tools.stack.mode import Mode, ModeNotAvailableError, open_stack, resolve_mode
from deploy_tools.stack.ports import PortInUseError
from deploy_tools.stack.process import Ports, ProcessStack

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
