"""The embedded local stack: Prefect server, process worker and demo-data server as processes."""

from deploy_tools.stack.local import LocalStack, PartStatus, Ports, StackError
from deploy_tools.stack.ports import PortInUseError

__all__ = ["LocalStack", "PartStatus", "PortInUseError", "Ports", "StackError"]
