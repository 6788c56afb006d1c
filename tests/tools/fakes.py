"""Fakes for the outside of a tool: call control that records, a context to pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.context import StateStore, ToolContext


@dataclass
class RecordingCallControl:
    """`CallControl` that records what tools asked for, in order."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def end_call(self, reason: str) -> None:
        self.calls.append(("end_call", reason))

    async def transfer(self, number: str, announcement: str | None) -> None:
        self.calls.append(("transfer", (number, announcement)))


def make_context(
    store: StateStore, call_sid: str = "CA-test", control: RecordingCallControl | None = None
) -> ToolContext:
    return ToolContext.for_call(
        store,
        control or RecordingCallControl(),
        call_sid=call_sid,
        stream_sid="MZ-test",
        from_number="+15550100001",
        to_number="+15550100002",
        parameters={"campaign": "spring"},
    )
