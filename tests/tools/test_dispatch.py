"""`ToolDispatcher`: every call ends in one result (or none, when cancelled)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from app.call.state import MemoryStateStore
from tests.tools.fakes import make_context
from tools import (
    Scheduled,
    ToolContext,
    ToolDispatcher,
    ToolError,
    ToolRegistry,
    ToolResult,
    tool,
)


@dataclass
class Point:
    x: int
    y: int


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
async def make_point(x: int, y: int) -> Point:
    """Return a dataclass."""
    return Point(x, y)


@tool
async def boom() -> None:
    """Always fails."""
    raise RuntimeError("secret internals")


@tool
async def polite_failure() -> None:
    """Fails with a message for the model."""
    raise ToolError("that slot is taken")


@tool(timeout=0.05)
async def slow() -> str:
    """Sleeps past its timeout."""
    await asyncio.sleep(10)
    return "late"


@tool
async def wait_forever(ctx: ToolContext) -> str:
    """Runs until cancelled."""
    await ctx.state.set("started", True)
    await asyncio.sleep(3600)
    return "never"


@tool
def blocking_sum(a: int, b: int) -> dict[str, Any]:
    """A sync tool: must run off the event loop thread."""
    time.sleep(0.05)  # would stall audio if it ran on the loop
    return {"sum": a + b, "thread": threading.current_thread().name}


@tool
async def not_json() -> object:
    """Returns something that cannot be JSON."""
    return threading.Lock()


@tool(behavior="NON_BLOCKING", scheduling="WHEN_IDLE")
async def background_lookup(q: str) -> str:
    """Non-blocking tool."""
    return q.upper()


REGISTRY = ToolRegistry(
    [add, make_point, boom, polite_failure, slow, wait_forever, blocking_sum, not_json,
     background_lookup]
)  # fmt: skip


@pytest.fixture
def dispatcher() -> ToolDispatcher:
    return ToolDispatcher(REGISTRY, make_context(MemoryStateStore()), timeout=2.0)


async def run_one(d: ToolDispatcher, name: str, args: dict[str, Any]) -> ToolResult:
    d.start("call-1", name, args)
    return await asyncio.wait_for(d.results.get(), 5)


async def test_success_wraps_result(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "add", {"a": 2, "b": "3"})
    assert result.response == {"result": 5}
    assert (result.call_id, result.name, result.ok, result.error) == ("call-1", "add", True, None)
    assert result.duration_s >= 0


async def test_dataclass_return_is_converted(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "make_point", {"x": 1, "y": 2})
    assert result.response == {"result": {"x": 1, "y": 2}}


async def test_unknown_tool(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "nope", {})
    assert not result.ok
    assert "unknown tool 'nope'" in result.response["error"]
    assert "add" in result.response["error"]  # lists what exists


async def test_bad_arguments(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "add", {"a": "two"})
    assert not result.ok
    assert "a: Input should be a valid integer" in result.response["error"]
    assert "b: missing required argument" in result.response["error"]


async def test_exception_becomes_error_and_is_logged(dispatcher: ToolDispatcher) -> None:
    with capture_logs() as logs:
        result = await run_one(dispatcher, "boom", {})
    assert result.response == {"error": "boom failed unexpectedly (RuntimeError)"}
    assert "secret internals" not in result.response["error"]
    assert any(e["event"] == "tool.failed" and e.get("exc_info") for e in logs)
    call_log = [e for e in logs if e["event"] == "tool.call"]
    assert call_log[0]["outcome"] == "error" and "duration_s" in call_log[0]


async def test_tool_error_message_goes_to_model(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "polite_failure", {})
    assert result.response == {"error": "that slot is taken"}


async def test_timeout(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "slow", {})
    assert not result.ok
    assert "did not finish within 0.05 s" in result.response["error"]


async def test_dispatcher_default_timeout() -> None:
    d = ToolDispatcher(REGISTRY, make_context(MemoryStateStore()), timeout=0.05)
    result = await run_one(d, "wait_forever", {})
    assert "within 0.05 s" in result.response["error"]


async def test_non_json_return_is_an_error(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "not_json", {})
    assert not result.ok and "not JSON" in result.response["error"]


async def test_sync_tool_runs_in_a_thread_and_loop_keeps_ticking(
    dispatcher: ToolDispatcher,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    result = await run_one(dispatcher, "blocking_sum", {"a": 1, "b": 2})
    task.cancel()
    assert result.response["result"]["sum"] == 3
    assert result.response["result"]["thread"] != threading.main_thread().name
    assert ticks >= 3  # the loop was not blocked for the tool's 50 ms


async def test_start_never_blocks(dispatcher: ToolDispatcher) -> None:
    began = time.perf_counter()
    dispatcher.start("c1", "wait_forever", {})
    assert time.perf_counter() - began < 0.01
    assert dispatcher.running == {"c1"}
    await dispatcher.aclose()


async def test_cancel_sends_no_result(dispatcher: ToolDispatcher) -> None:
    dispatcher.start("c1", "wait_forever", {})
    dispatcher.start("c2", "add", {"a": 1, "b": 1})
    await asyncio.sleep(0.01)
    assert dispatcher.cancel(["c1", "unknown-id"]) == ["c1"]
    result = await asyncio.wait_for(dispatcher.results.get(), 1)
    assert result.call_id == "c2"
    await asyncio.sleep(0.05)
    assert dispatcher.results.empty()
    assert dispatcher.running == frozenset()


async def test_aclose_cancels_everything(dispatcher: ToolDispatcher) -> None:
    for i in range(3):
        dispatcher.start(f"c{i}", "wait_forever", {})
    await asyncio.sleep(0.01)
    await dispatcher.aclose()
    assert dispatcher.running == frozenset()
    assert dispatcher.results.empty()
    dispatcher.start("late", "add", {"a": 1, "b": 1})  # after hang-up: ignored
    await asyncio.sleep(0.01)
    assert dispatcher.results.empty()


async def test_non_blocking_scheduling_is_carried(dispatcher: ToolDispatcher) -> None:
    result = await run_one(dispatcher, "background_lookup", {"q": "x"})
    assert result.scheduling == "WHEN_IDLE"
    assert result.response == {"result": "X"}
    plain = await run_one(dispatcher, "add", {"a": 1, "b": 1})
    assert plain.scheduling is None


async def test_callback_delivery_and_callback_failure_is_logged() -> None:
    seen: list[ToolResult] = []

    async def on_result(result: ToolResult) -> None:
        seen.append(result)
        if result.call_id == "bad":
            raise ConnectionError("live socket closed")

    d = ToolDispatcher(REGISTRY, make_context(MemoryStateStore()), timeout=1.0, on_result=on_result)
    with capture_logs() as logs:
        d.start("good", "add", {"a": 1, "b": 2})
        d.start("bad", "add", {"a": 1, "b": 2})
        await asyncio.sleep(0.05)
    assert {r.call_id for r in seen} == {"good", "bad"}
    assert d.results.empty()
    assert any(e["event"] == "tool.deliver_failed" for e in logs)


async def test_every_call_is_logged_with_duration(dispatcher: ToolDispatcher) -> None:
    with capture_logs() as logs:
        await run_one(dispatcher, "add", {"a": 1, "b": 2})
    (entry,) = [e for e in logs if e["event"] == "tool.call"]
    assert entry["tool"] == "add" and entry["outcome"] == "ok"
    assert entry["call_id"] == "call-1" and isinstance(entry["duration_s"], float)


@tool(behavior="NON_BLOCKING")
async def watch_order(urgent: bool) -> Scheduled:
    """Non-blocking tool whose result picks its own scheduling."""
    return Scheduled({"status": "shipped"}, "INTERRUPT" if urgent else "SILENT")


@tool
async def blocking_scheduled() -> Scheduled:
    """A blocking tool cannot schedule: the choice is ignored."""
    return Scheduled("done", "SILENT")


async def test_a_result_chooses_its_own_scheduling() -> None:
    registry = ToolRegistry([watch_order, blocking_scheduled])
    d = ToolDispatcher(registry, make_context(MemoryStateStore()), timeout=2.0)
    urgent = await run_one(d, "watch_order", {"urgent": True})
    assert (urgent.scheduling, urgent.response) == ("INTERRUPT", {"result": {"status": "shipped"}})
    quiet = await run_one(d, "watch_order", {"urgent": False})
    assert quiet.scheduling == "SILENT"
    blocking = await run_one(d, "blocking_scheduled", {})
    assert (blocking.scheduling, blocking.response) == (None, {"result": "done"})
