"""`CallRecorder`: a stereo WAV of what was said and heard, and the call record.

The bridge calls the recorder from the event loop. Every public method only posts a
command to a mailbox (an append: never wakes anyone, never blocks, never raises); one
writer thread per call collects them when it flushes, owns all the state and does all
file I/O. Commands run in the order they were
made, so the writer sees the call exactly as the bridge did.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import structlog
from numpy.typing import NDArray

from app.recording.mailbox import Mailbox
from app.recording.record import Side
from app.recording.timeline import AGENT, CALLER
from app.recording.writer import (
    CloseRequest,
    Command,
    Opener,
    RecordingResult,
    RecordingWriter,
    open_new_file,
)

CLOSE_TIMEOUT_S = 10.0

log = structlog.get_logger("app.recording")


class CallRecorder:
    """Records one call. Methods are cheap and safe to call from the event loop."""

    def __init__(
        self,
        directory: Path,
        call_sid: str,
        *,
        meta: Mapping[str, object],
        flush_interval: float = 0.5,
        sample_rate: int = 8000,
        opener: Opener = open_new_file,
    ) -> None:
        self.call_sid = call_sid
        self._queue: Mailbox[Command | CloseRequest] = Mailbox()
        self._lock = threading.Lock()
        self._result: Future[RecordingResult] | None = None
        self._writer = RecordingWriter(
            directory, call_sid, dict(meta), flush_interval, sample_rate, opener
        )
        self._thread = threading.Thread(
            target=self._writer.run, args=(self._queue,), name=f"recorder-{call_sid}", daemon=True
        )
        self._thread.start()

    # --- audio -------------------------------------------------------------------
    def caller_audio(self, at_sample: int, pcm: NDArray[np.int16]) -> None:
        """Caller audio as received, at its call-clock position (Twilio's media timestamp)."""
        self._put(self._writer.timeline.place, CALLER, int(at_sample), _owned(pcm))

    def agent_audio(self, at_sample: int, pcm: NDArray[np.int16]) -> None:
        """Agent audio at the position where it is scheduled to be played to the caller."""
        self._put(self._writer.timeline.place, AGENT, int(at_sample), _owned(pcm))

    def agent_cleared(self, at_sample: int) -> None:
        """Barge-in: agent audio scheduled at or after `at_sample` was never heard."""
        self._put(self._writer.timeline.clear_agent, int(at_sample))

    def advance(self, now_sample: int) -> None:
        """The caller has heard everything before `now_sample` (lets agent audio commit)."""
        self._put(self._writer.timeline.advance, int(now_sample))

    # --- call record -------------------------------------------------------------
    def transcript(self, side: Side, text: str, at_sample: int) -> None:
        self._put(self._writer.log.add_transcript, side, text, int(at_sample))

    def tool_call(
        self,
        call_id: str,
        name: str,
        args: Mapping[str, object],
        result: object,
        ok: bool,
        duration_s: float,
        at_sample: int,
    ) -> None:
        add = self._writer.log.add_tool_call
        self._put(add, call_id, name, dict(args), result, ok, duration_s, int(at_sample))

    def interruption(self, at_sample: int) -> None:
        self._put(self._writer.log.add_interruption, int(at_sample))

    def reconnect(self, at_sample: int, reason: str, kind: str = "resumed") -> None:
        """`kind`: resumed (by handle) | fresh_session (Live refused the handle)."""
        self._put(self._writer.log.add_reconnect, int(at_sample), reason, kind)

    def usage(self, mapping: Mapping[str, object]) -> None:
        """Token counts from Live's usage metadata; integers are summed over the call."""
        self._put(self._writer.log.add_usage, dict(mapping))

    def dtmf(self, digit: str, at_sample: int) -> None:
        self._put(self._writer.log.add_dtmf, digit, int(at_sample))

    def note(self, kind: str, detail: str, at_sample: int) -> None:
        self._put(self._writer.log.add_note, kind, detail, int(at_sample))

    # --- closing -----------------------------------------------------------------
    async def aclose(self, end_reason: str) -> RecordingResult:
        """Commit everything and write the call record; idempotent, never raises."""
        future = self._request_close(end_reason)
        try:
            # shield: a cancelled bridge must not cancel the writer's own future.
            return await asyncio.shield(asyncio.wrap_future(future))
        except Exception as exc:  # the writer reports its failures as results; this is a bug
            log.exception("recording.close_failed", call_sid=self.call_sid)
            return self._writer.failed_result(repr(exc))

    def close(self, end_reason: str = "server_shutdown") -> RecordingResult:
        """Blocking `aclose` for shutdown paths off the event loop."""
        future = self._request_close(end_reason)
        try:
            return future.result(timeout=CLOSE_TIMEOUT_S)
        except FutureTimeout:
            log.error("recording.close_timeout", call_sid=self.call_sid)
            return self._writer.failed_result("the writer did not finish in time")
        except Exception as exc:  # as in aclose: a bug, reported, never raised at shutdown
            log.exception("recording.close_failed", call_sid=self.call_sid)
            return self._writer.failed_result(repr(exc))

    def _request_close(self, end_reason: str) -> Future[RecordingResult]:
        with self._lock:
            if self._result is None:
                self._result = Future()
                self._queue.put_urgent(CloseRequest(end_reason, self._result))
            return self._result

    def _put(self, method: Callable[..., None], *args: object) -> None:
        if self._result is None:  # after close, late events are dropped
            self._queue.put(Command(method, args))


def _owned(pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    # A copy: the bridge may reuse its buffer before the writer thread gets to it.
    return np.array(pcm, dtype=np.int16, copy=True).reshape(-1)
