"""A small appointment book kept in the call's state, to show stateful tools.

The whole book is one state field, so each change is a single atomic update: the id
counter and the clash check cannot race with another tool call on the same call.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, get_args

from tools.context import ToolContext, ToolError
from tools.registry import Tool, tool

Day = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
Time = Annotated[str, "24-hour time, HH:MM, e.g. 14:30"]

BOOK_KEY = "appointments"


@dataclass(frozen=True, slots=True)
class Appointment:
    id: str
    day: str
    time: str
    name: str


def _empty() -> dict[str, Any]:
    return {"next_id": 1, "items": {}}


def _time(value: str) -> str:
    match = re.fullmatch(r"\s*([01]?\d|2[0-3])[:.h]?([0-5]\d)\s*", value)
    if not match:
        raise ToolError(f"{value!r} is not a time like 14:30")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _clash(book: dict[str, Any], day: str, time: str, ignore: str | None = None) -> None:
    for item in book["items"].values():
        if item["day"] == day and item["time"] == time and item["id"] != ignore:
            raise ToolError(f"{day} at {time} is already taken")


def _find(book: dict[str, Any], appointment_id: str) -> dict[str, Any]:
    item = book["items"].get(appointment_id.strip().upper())
    if item is None:
        raise ToolError(f"there is no appointment {appointment_id!r}")
    return dict(item)


@tool
async def book_appointment(ctx: ToolContext, day: Day, time: Time, name: str) -> Appointment:
    """Book an appointment for the caller.

    Args:
        day: Day of the week.
        time: Start time.
        name: The caller's name, as they said it.
    """
    when = _time(time)

    def book(current: dict[str, Any]) -> dict[str, Any]:
        _clash(current, day, when)
        new_id = f"A{current['next_id']}"
        item = asdict(Appointment(new_id, day, when, name))
        return {"next_id": current["next_id"] + 1, "items": {**current["items"], new_id: item}}

    after = await ctx.state.update(BOOK_KEY, book, default=_empty())
    # `update` returns the value our `book` wrote, so its counter names our booking.
    new_id = f"A{after['next_id'] - 1}"
    ctx.log.info("appointment.booked", appointment_id=new_id)
    return Appointment(**after["items"][new_id])


@tool
async def move_appointment(
    ctx: ToolContext, appointment_id: str, day: Day, time: Time
) -> Appointment:
    """Move an existing appointment to another day or time.

    Args:
        appointment_id: The id given when it was booked, e.g. A1.
        day: The new day of the week.
        time: The new start time.
    """
    when = _time(time)
    key = appointment_id.strip().upper()

    def move(current: dict[str, Any]) -> dict[str, Any]:
        item = _find(current, key)
        _clash(current, day, when, ignore=key)
        item.update(day=day, time=when)
        return {**current, "items": {**current["items"], key: item}}

    after = await ctx.state.update(BOOK_KEY, move, default=_empty())
    return Appointment(**after["items"][key])


@tool
async def cancel_appointment(ctx: ToolContext, appointment_id: str) -> str:
    """Cancel an appointment.

    Args:
        appointment_id: The id given when it was booked, e.g. A1.
    """
    key = appointment_id.strip().upper()

    def cancel(current: dict[str, Any]) -> dict[str, Any]:
        _find(current, key)
        return {**current, "items": {k: v for k, v in current["items"].items() if k != key}}

    await ctx.state.update(BOOK_KEY, cancel, default=_empty())
    return f"Appointment {key} is cancelled."


@tool
async def list_appointments(ctx: ToolContext) -> list[Appointment]:
    """List the appointments booked so far on this call, in order of day and time."""
    book = await ctx.state.get(BOOK_KEY, _empty())
    items = [Appointment(**item) for item in book["items"].values()]
    order = {d: i for i, d in enumerate(get_args(Day))}
    return sorted(items, key=lambda a: (order.get(a.day, 99), a.time))


APPOINTMENT_TOOLS: tuple[Tool[..., Any], ...] = (
    book_appointment,
    move_appointment,
    cancel_appointment,
    list_appointments,
)
