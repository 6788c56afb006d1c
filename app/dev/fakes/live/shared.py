"""What the fake Live server keeps across connections, and pure helpers of a session.

`SharedState`: conversations reachable by resumption handle, and faults already fired.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed

from app.dev.fakes.live.records import Conversation


class SharedState:
    """Server-wide state: conversations reachable by resumption handle, faults fired."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self._handles: dict[str, Conversation] = {}
        self._fired: set[str] = set()
        self._ids = itertools.count(1)
        self._tool_ids = itertools.count(1)

    def new_conversation(self) -> Conversation:
        conv = Conversation(id=f"conv-{next(self._ids)}")
        self.conversations[conv.id] = conv
        return conv

    def issue_handle(self, conv: Conversation) -> str:
        """A new handle for the conversation's current state (old handles stay valid)."""
        handle = f"h-{conv.id}-{uuid.uuid4().hex[:12]}"
        self._handles[handle] = conv.snapshot()
        return handle

    def resume(self, handle: str) -> Conversation | None:
        """The conversation as it was when `handle` was issued, now live again."""
        snap = self._handles.get(handle)
        if snap is None:
            return None
        conv = snap.snapshot()
        self.conversations[conv.id] = conv
        return conv

    def fault_fires(self, name: str, repeat: bool) -> bool:
        if repeat:
            return True
        if name in self._fired:
            return False
        self._fired.add(name)
        return True

    def tool_call_id(self) -> str:
        return f"call-{next(self._tool_ids)}"


def contains(actual: Any, expected: Any) -> bool:
    """`expected` is a subset of `actual`: objects recursively, anything else equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in expected.items()
        )
    return bool(actual == expected)


def raise_unexpected(task: asyncio.Task[None]) -> None:
    """Re-raise a reply task's failure, except cancellation and a closed connection."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ConnectionClosed):
        raise exc


def fragments(text: str, n_chunks: int) -> dict[int, str]:
    """Split a transcript into word groups keyed by the chunk they ride with.

    The real server streams outputTranscription in pieces alongside the audio; the last
    piece always lands on the last chunk so it can be bundled with turnComplete.
    """
    words = text.split()
    if not words:
        return {}
    groups = max(1, min(len(words), n_chunks // 4 or 1))
    out: dict[int, str] = {}
    for g in range(groups):
        part = words[g * len(words) // groups : (g + 1) * len(words) // groups]
        index = round((g + 1) * n_chunks / groups) - 1
        out[index] = " ".join(part) + ("" if g == groups - 1 else " ")
    return out
