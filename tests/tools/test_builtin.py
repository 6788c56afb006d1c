"""`end_call` and `transfer_call` ask the bridge through `CallControl`."""

from __future__ import annotations

import asyncio

from app.call.state import MemoryStateStore
from tests.tools.fakes import RecordingCallControl, make_context
from tools import ToolDispatcher, ToolRegistry, ToolResult
from tools.builtin import end_call, make_builtin_tools, normalize_number


async def call(control: RecordingCallControl, name: str, args: dict[str, str]) -> ToolResult:
    registry = ToolRegistry(make_builtin_tools({"+1 555 010 9999"}))
    ctx = make_context(MemoryStateStore(), control=control)
    dispatcher = ToolDispatcher(registry, ctx, timeout=1.0)
    dispatcher.start("c1", name, args)
    return await asyncio.wait_for(dispatcher.results.get(), 2)


async def test_end_call_asks_the_bridge() -> None:
    control = RecordingCallControl()
    result = await call(control, "end_call", {"reason": "caller said bye"})
    assert result.ok
    assert control.calls == [("end_call", "caller said bye")]


def test_end_call_tells_the_model_to_say_goodbye_first() -> None:
    assert "goodbye" in end_call.description.lower()
    assert "before" in end_call.description.lower() or "after you have said" in (
        end_call.description.lower()
    )


async def test_transfer_to_an_allowed_number() -> None:
    control = RecordingCallControl()
    result = await call(
        control, "transfer_call", {"number": "+15550109999", "announcement": "One moment."}
    )
    assert result.ok, result.response
    # The configured spelling is what gets dialled.
    assert control.calls == [("transfer", ("+1 555 010 9999", "One moment."))]


async def test_transfer_elsewhere_is_refused() -> None:
    control = RecordingCallControl()
    result = await call(control, "transfer_call", {"number": "+19005550000", "announcement": ""})
    assert not result.ok
    assert "not allowed" in result.response["error"]
    assert "+1 555 010 9999" in result.response["error"]
    assert control.calls == []


async def test_no_allowlist_means_no_transfers() -> None:
    (_, transfer) = make_builtin_tools(frozenset())
    assert "none are configured" in transfer.description
    control = RecordingCallControl()
    ctx = make_context(MemoryStateStore(), control=control)
    dispatcher = ToolDispatcher(ToolRegistry([transfer]), ctx, timeout=1.0)
    dispatcher.start("c1", "transfer_call", {"number": "+15550109999", "announcement": "x"})
    result = await asyncio.wait_for(dispatcher.results.get(), 2)
    assert not result.ok and control.calls == []


def test_normalize_number() -> None:
    assert normalize_number("+1 (555) 010-9999") == "+15550109999"
    assert normalize_number("555.010.9999") == "5550109999"
    assert normalize_number("+15550109999") != normalize_number("15550109999")
