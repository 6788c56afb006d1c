"""The hand-over from the event loop to a recording's writer thread.

A `queue.SimpleQueue` wakes the writer on every put. The bridge hands audio over tens
of times a second per call, and each wake-up is a context switch plus a GIL hand-off
that the event loop pays for: in `voicebot bench` that was a quarter of the loop's CPU.
The writer only needs its commands when it flushes (every `flush_interval`), so puts
here just append to a deque (atomic under the GIL, no wake-up) and the writer collects
them on its own schedule; only the close request wakes it early.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Many puts from one thread, batched takes by another."""

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._urgent = threading.Event()

    def put(self, item: T) -> None:
        """Queue `item`; the reader sees it at its next take (no wake-up)."""
        self._items.append(item)

    def put_urgent(self, item: T) -> None:
        """Queue `item` and wake the reader now."""
        self._items.append(item)
        self._urgent.set()

    def take(self, timeout: float | None) -> list[T]:
        """Everything queued, after waiting up to `timeout` s (None: until urgent)."""
        if not self._items or timeout is None or timeout > 0:
            self._urgent.wait(timeout)
        self._urgent.clear()
        items = []
        # popleft is atomic: a put racing with this loop lands in this take or the next.
        while True:
            try:
                items.append(self._items.popleft())
            except IndexError:
                return items
