"""Tools the voice agent can call: plain typed functions with a narrow per-call context.

    from tools import ToolContext, tool

    @tool
    async def lookup_order(ctx: ToolContext, order_id: str) -> dict[str, str]:
        # The docstring's summary and Args: section become the declaration.
        ...

This package never imports `app`.
"""

from tools.context import CallControl, CallState, StateStore, ToolContext, ToolError
from tools.dispatch import ToolDispatcher, ToolResult
from tools.loader import ToolLoadError, build_registry
from tools.registry import Scheduled, Tool, ToolRegistry, tool
from tools.schema import ToolArgumentsError, ToolDefinitionError

__all__ = [
    "CallControl",
    "CallState",
    "Scheduled",
    "StateStore",
    "Tool",
    "ToolArgumentsError",
    "ToolContext",
    "ToolDefinitionError",
    "ToolDispatcher",
    "ToolError",
    "ToolLoadError",
    "ToolRegistry",
    "ToolResult",
    "build_registry",
    "tool",
]
