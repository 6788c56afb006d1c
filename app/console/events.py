"""The per-call event bus: what the console's live views subscribe to.

Calls publish without waiting: `publish` is a synchronous `put_nowait` into each
watcher's bounded queue. A watcher that falls behind (a slow browser, a stalled proxy)
loses events, counted in `dropped`, and never slows the call. With nobody watching,
publishing is a dict lookup.

The interface is two methods (`publish`, `subscribe`) plus the active-calls snapshot,
so a shared implementation (Redis pub/sub for several instances) can stand in for
`MemoryBus` without the console or the calls noticing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

log = structlog.get_logger()

#: Subscribe to this to see every call's lifecycle events (the active-calls list).
ALL_CALLS = "*"
#: Events that also go to ALL_CALLS watchers (the rest stay on the call's own channel).
LIFECYCLE = frozenset({"call.started", "call.updated", "call.ended"})
DEFAULT_QUEUE = 256
# Events kept per active call so a watcher who opens a call mid-way sees it from the start.
HISTORY = 300

Event = dict[str, Any]


class Watcher:
    """One subscriber: a bounded queue; when full, new events are dropped and counted."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self) -> Event:
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()


class EventBus(Protocol):
    """What calls publish to and the console subscribes to."""

    def publish(self, call_sid: str, event: Event) -> None:
        """Never blocks, never raises for a slow or absent watcher."""

    def watched(self, call_sid: str) -> bool:
        """Anyone listening to this call (so costly events can be skipped)?"""

    def subscribe(
        self, channel: str, maxsize: int = DEFAULT_QUEUE
    ) -> contextlib.AbstractContextManager[Watcher]:
        """A watcher of one call's events, or of ALL_CALLS lifecycle events."""

    def active(self) -> list[Event]:
        """Summaries of the calls in progress, oldest first."""

    def recent(self, call_sid: str) -> list[Event]:
        """The call's events so far (bounded), for a watcher who joins mid-call."""


@dataclass
class MemoryBus:
    """The in-process bus (one instance serves every call and every watcher)."""

    watchers: dict[str, set[Watcher]] = field(default_factory=dict)
    calls: dict[str, Event] = field(default_factory=dict)
    history: dict[str, deque[Event]] = field(default_factory=dict)
    dropped_total: int = 0

    def publish(self, call_sid: str, event: Event) -> None:
        kind = event.get("type")
        if kind in LIFECYCLE:
            self._track(call_sid, event)
            self._offer(ALL_CALLS, event)
        else:
            kept = self.history.get(call_sid)
            if kept is not None:
                kept.append(event)
        self._offer(call_sid, event)

    def watched(self, call_sid: str) -> bool:
        return bool(self.watchers.get(call_sid))

    @contextlib.contextmanager
    def subscribe(self, channel: str, maxsize: int = DEFAULT_QUEUE) -> Iterator[Watcher]:
        watcher = Watcher(maxsize)
        self.watchers.setdefault(channel, set()).add(watcher)
        try:
            yield watcher
        finally:
            group = self.watchers.get(channel)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self.watchers[channel]
            if watcher.dropped:
                self.dropped_total += watcher.dropped
                log.info("console.watcher_dropped", channel=channel, events=watcher.dropped)

    def active(self) -> list[Event]:
        return sorted(self.calls.values(), key=lambda call: str(call.get("started_at", "")))

    def recent(self, call_sid: str) -> list[Event]:
        return list(self.history.get(call_sid, ()))

    def _offer(self, channel: str, event: Event) -> None:
        group = self.watchers.get(channel)
        if group:
            for watcher in tuple(group):
                watcher.offer(event)

    def _track(self, call_sid: str, event: Event) -> None:
        if event["type"] == "call.ended":
            self.calls.pop(call_sid, None)
            self.history.pop(call_sid, None)
            return
        if event["type"] == "call.started":
            self.history[call_sid] = deque(maxlen=HISTORY)
        elif call_sid not in self.calls:
            return  # a late update for a call that has ended
        summary = self.calls.setdefault(call_sid, {"call_sid": call_sid})
        summary.update(event.get("call", {}))
