"""The bridge's keypad: feeds `DigitBatcher` and sends due digits to Live as text.

Sending happens in its own task, so a key press never holds up the caller's audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.agents.dtmf import GAP_S, DigitBatcher, keypad_text
from app.errors import LiveError


class Keypad:
    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        log: Any,
        *,
        gap_s: float = GAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send_text
        self._log = log
        self._clock = clock
        self._batch = DigitBatcher(gap_s)
        self._task: asyncio.Task[None] | None = None
        self.sent: list[str] = []  # digit groups sent, in order

    def press(self, digit: str) -> None:
        try:
            self._batch.press(digit, self._clock())
        except ValueError as exc:
            self._log.warning("caller.dtmf_ignored", error=str(exc))
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush(), name="keypad")

    async def _flush(self) -> None:
        while (deadline := self._batch.deadline()) is not None:
            await asyncio.sleep(max(0.0, deadline - self._clock()))
            digits = self._batch.take_due(self._clock())
            if digits is None:
                continue  # another key came in meanwhile: wait for the new deadline
            try:
                await self._send(keypad_text(digits))
            except LiveError as exc:  # the link is gone or giving up: the call is ending
                self._log.warning("caller.dtmf_not_sent", digits=digits, error=str(exc))
                return
            self.sent.append(digits)
            self._log.info("caller.dtmf_sent", digits=digits)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
