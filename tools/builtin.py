"""Tools every deployment can enable: hang up, and transfer to an allowed number."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

from tools.context import ToolContext, ToolError
from tools.registry import Tool, tool


@tool
async def end_call(ctx: ToolContext, reason: str) -> str:
    """End the phone call.

    Only call this after you have said a short goodbye to the caller: the line is
    closed once your goodbye has been heard. Use it when the caller says goodbye, asks
    to hang up, or the conversation is clearly finished.

    Args:
        reason: Why the call is ending, in a few words (for the call log).
    """
    await ctx.control.end_call(reason)
    return "The call will end after your goodbye has been played."


def normalize_number(number: str) -> str:
    """Keep a leading '+' and the digits: "+1 (555) 010-9999" -> "+15550109999"."""
    digits = re.sub(r"\D", "", number)
    return ("+" + digits) if number.strip().startswith("+") else digits


def make_transfer_call(allowlist: Iterable[str]) -> Tool[..., Any]:
    """`transfer_call`, allowed to dial only the configured numbers (compared normalized)."""
    allowed = {normalize_number(n): n for n in allowlist if normalize_number(n)}
    destinations = ", ".join(sorted(allowed.values())) or "none are configured"

    async def transfer_call(
        ctx: ToolContext,
        number: Annotated[str, "The number to transfer to, exactly as listed."],
        announcement: Annotated[str, "What to say to the caller just before the transfer."],
    ) -> str:
        number_key = normalize_number(number)
        if number_key not in allowed:
            # The model sees this and can tell the caller; it must not guess numbers.
            raise ToolError(
                f"transferring to {number!r} is not allowed; allowed numbers: {destinations}"
            )
        await ctx.control.transfer(allowed[number_key], announcement.strip() or None)
        return f"Transferring the caller to {allowed[number_key]}."

    describe = tool(
        description=(
            "Transfer the caller to a human at one of the allowed phone numbers "
            f"({destinations}). Only use a number from that list."
        )
    )
    return describe(transfer_call)


def make_builtin_tools(transfer_allowlist: Iterable[str] = frozenset()) -> list[Tool[..., Any]]:
    """The built-in tools, with `transfer_call` bound to its allow-list."""
    return [end_call, make_transfer_call(transfer_allowlist)]
