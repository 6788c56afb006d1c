"""The example appointment tools keep their book in the call's state."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.call.state import MemoryStateStore
from tests.tools.fakes import make_context
from tools import ToolDispatcher, ToolRegistry
from tools.examples import EXAMPLE_SETS


@pytest.fixture
def dispatcher() -> ToolDispatcher:
    registry = ToolRegistry(EXAMPLE_SETS["appointments"])
    return ToolDispatcher(registry, make_context(MemoryStateStore()), timeout=2.0)


async def run(d: ToolDispatcher, tool_name: str, /, **args: Any) -> dict[str, Any]:
    d.start(f"{tool_name}-{id(args)}", tool_name, args)
    return (await asyncio.wait_for(d.results.get(), 2)).response


async def test_book_list_move_cancel(dispatcher: ToolDispatcher) -> None:
    booked = await run(dispatcher, "book_appointment", day="tuesday", time="9:30", name="Ada")
    assert booked == {"result": {"id": "A1", "day": "tuesday", "time": "09:30", "name": "Ada"}}
    await run(dispatcher, "book_appointment", day="monday", time="14:00", name="Bo")

    listed = await run(dispatcher, "list_appointments")
    assert [a["id"] for a in listed["result"]] == ["A2", "A1"]  # ordered by day

    moved = await run(dispatcher, "move_appointment", appointment_id="a1", day="friday",
                      time="10:00")  # fmt: skip
    assert moved["result"]["day"] == "friday" and moved["result"]["time"] == "10:00"

    assert (
        "cancelled" in (await run(dispatcher, "cancel_appointment", appointment_id="A2"))["result"]
    )
    listed = await run(dispatcher, "list_appointments")
    assert [a["id"] for a in listed["result"]] == ["A1"]


async def test_errors_reach_the_model(dispatcher: ToolDispatcher) -> None:
    await run(dispatcher, "book_appointment", day="monday", time="10:00", name="Ada")
    clash = await run(dispatcher, "book_appointment", day="monday", time="10:00", name="Bo")
    assert clash == {"error": "monday at 10:00 is already taken"}
    assert (
        "not a time"
        in (await run(dispatcher, "book_appointment", day="monday", time="noonish", name="C"))[
            "error"
        ]
    )
    assert (
        "no appointment"
        in (await run(dispatcher, "cancel_appointment", appointment_id="A9"))["error"]
    )
    bad_day = await run(dispatcher, "book_appointment", day="sunday", time="10:00", name="D")
    assert bad_day["error"].startswith("invalid arguments for book_appointment: day:")


async def test_concurrent_bookings_get_distinct_ids(dispatcher: ToolDispatcher) -> None:
    for i in range(10):
        dispatcher.start(f"c{i}", "book_appointment",
                         {"day": "monday", "time": f"{8 + i}:00", "name": f"n{i}"})  # fmt: skip
    results = [await asyncio.wait_for(dispatcher.results.get(), 2) for _ in range(10)]
    assert sorted(r.response["result"]["id"] for r in results) == sorted(
        f"A{i}" for i in range(1, 11)
    )
