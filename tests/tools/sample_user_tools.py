"""A user's TOOLS_MODULE, as the loader sees it."""

from __future__ import annotations

from tools import ToolContext, tool


@tool
async def lookup_order(ctx: ToolContext, order_id: str) -> dict[str, str]:
    """Look up an order's status.

    Args:
        order_id: The order number the caller reads out.
    """
    return {"order_id": order_id, "status": "shipped"}


def helper() -> None:
    """Not a tool: plain functions are ignored."""
