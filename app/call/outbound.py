"""Writing to the Twilio socket: clears, marks and paced agent audio.

One writer task owns the socket's pacing: other tasks change state (the playout queue,
the policy) and queue a control message (`clear`, a mark), then wake it. Sends never
overlap (one lock), and nobody ever waits for the socket on another's behalf: a slow
Twilio socket delays only the task that is sending, and the Live pump goes on reading
(and acting on `interrupted`) while the writer is stuck in a send.

The one exception to "only the writer sends" is latency: when the socket is free (no
send in progress), the Live pump sends a barge-in's `clear`, or the first frames of a
chunk that found the queue empty, itself. Waking the writer instead puts the send behind
every callback the event loop has ready, which on a loaded loop is milliseconds (the
`clear` bar is 0.5 ms at p99). When the socket is busy they are queued for the writer,
and a queued `clear` stops a burst of audio sends between two messages.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.call.audio_batch import AudioBatch
from app.call.info import CallStats
from app.call.playout import FRAME_SAMPLES, RATE, Playout
from app.call.policy import CallPolicy
from app.call.ports import BridgeMetrics, Recorder, TwilioSink
from telephony.messages import clear_message, mark_message, media_message
from telephony.mulaw import pcm16_to_ulaw

# Agent audio is handed to the recorder once per send burst (flushed before the burst
# ends); a burst is at most the 200 ms playout lead, so this limit is only a cap.
AGENT_BATCH_FRAMES = 50


@dataclass(frozen=True, slots=True)
class _Clear:
    stopped_at: int  # call-clock sample where the caller stopped hearing the agent
    received: float | None  # perf_counter of the `interrupted`; None: our own clear


class Outbound:
    def __init__(
        self,
        sink: TwilioSink,
        stream_sid: str,
        playout: Playout,
        now_sample: Callable[[], int],
        *,
        policy: CallPolicy,
        stats: CallStats,
        recorder: Recorder | None,
        metrics: BridgeMetrics | None,
        flush_caller: Callable[[], None],
        wake_watchdog: Callable[[], None],
        log: Any,
    ) -> None:
        self._sink = sink
        self._sid = stream_sid
        self._playout = playout
        self._now_sample = now_sample
        self._policy = policy
        self._stats = stats
        self._recorder = recorder
        self._metrics = metrics
        self._flush_caller = flush_caller
        self._wake_watchdog = wake_watchdog
        self._log = log
        self._agent_rec: AudioBatch | None = None
        if recorder is not None:
            self._agent_rec = AudioBatch(recorder.agent_audio, AGENT_BATCH_FRAMES)
        self._control: deque[_Clear | str] = deque()
        self._kicked = False
        # Asleep on a pacing timer: it wakes by itself when the next frames are due. Any
        # other state (waiting for work, sending, not started yet) needs a kick.
        self._paced = False
        self._waiter: asyncio.Future[None] | None = None
        self._chunk_received: float | None = None
        # Held around every send section, by the writer or the Live pump's fast path;
        # the pump only ever takes it when free (`locked()` first), never waits for it.
        self._socket = asyncio.Lock()

    # --- called by the other tasks (never await, never send) ---------------------------
    def kick(self) -> None:
        """Wake the writer: something is queued (audio, a clear, a mark)."""
        self._kicked = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake_if_idle(self) -> None:
        """Wake the writer unless it sleeps on a pacing timer (a paced writer wakes anyway;
        waking it early would send a short burst, i.e. more messages). A writer that has
        not started yet counts as idle: the kick is kept for its first pass."""
        if not self._paced:
            self.kick()

    async def audio_queued(self, received: float) -> None:
        """A chunk made audio ready to go (`Playout.ready`): send what pacing allows now,
        timed from `received` (the Live event in hand) to its frames written. Chunks that
        pacing holds back wait on purpose (their audio would otherwise wait in Twilio's
        buffer): not timed."""
        self._chunk_received = received
        if self._socket.locked() or self._control:
            self.kick()  # the writer is sending: it takes these frames next
            return
        async with self._socket:
            await self._send_frames()
        # What is left is paced by the writer. A writer asleep on a timer wakes anyway
        # (sending only moved its next deadline later); only an idle one needs waking.
        if self._playout.has_frame():
            self.wake_if_idle()

    def clear(self, stopped_at: int, received: float | None) -> None:
        """Queue a `clear` for the writer (the playout was already cleared). `received`
        times a barge-in; None for our own clear before a notice."""
        self._control.append(_Clear(stopped_at, received))
        self.kick()

    async def clear_now(self, stopped_at: int, received: float) -> bool:
        """A barge-in's `clear`: sent at once when the socket is free, else queued ahead
        of any further audio. True when it was sent here."""
        if self._socket.locked() or self._control:
            self.clear(stopped_at, received)
            return False
        async with self._socket:
            await self._send_control(_Clear(stopped_at, received))
        return True

    def mark(self, purpose: str) -> str:
        """Queue a mark after everything sent so far; returns its name."""
        name = self._playout.new_mark(purpose).name
        self._control.append(name)
        self.kick()
        return name

    # --- the writer task ---------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay: float | None = None
        while True:
            if not self._kicked:
                await self._sleep(loop, delay)
            self._kicked = False
            async with self._socket:
                while self._control:
                    await self._send_control(self._control.popleft())
                await self._send_frames()
            delay = None
            if self._playout.has_frame():
                # Time passes while a burst is sent, so frames may be due again at once:
                # keep going until none is queued, never rely on new audio to wake us
                # (a notice or a last turn gets none).
                wait = self._playout.wait_samples(self._now_sample())
                if not wait:
                    self._kicked = True
                delay = wait / RATE

    async def _sleep(self, loop: asyncio.AbstractEventLoop, delay: float | None) -> None:
        waiter = self._waiter = loop.create_future()
        timer = None if delay is None else loop.call_later(delay, self.kick)
        self._paced = timer is not None
        try:
            await waiter
        finally:
            self._waiter, self._paced = None, False
            if timer is not None:
                timer.cancel()

    async def _send_control(self, item: _Clear | str) -> None:
        if isinstance(item, str):
            await self._sink.send_text(mark_message(self._sid, item))
            return
        await self._sink.send_text(clear_message(self._sid))
        if item.received is not None:
            if self._metrics:
                self._metrics.interrupted(time.perf_counter() - item.received)
            self._log.info("agent.interrupted")
        if self._recorder is not None:
            self._flush_caller()  # the caller's position as of the clear goes first
            self._recorder.agent_cleared(item.stopped_at)
            if item.received is not None:
                self._recorder.interruption(item.stopped_at)

    async def _send_frames(self) -> None:
        """Send what the pacing budget allows now (normally one message of whole frames,
        see `Playout`) and any due marks; stop early for a queued clear or mark."""
        playout, sent = self._playout, 0
        try:
            while (
                not self._control and (burst := playout.next_burst(self._now_sample())) is not None
            ):
                payload = pcm16_to_ulaw(burst.pcm)
                await self._sink.send_text(media_message(self._sid, payload))
                if self._agent_rec is not None:
                    self._agent_rec.add(burst.start_sample, burst.pcm)
                sent += burst.pcm.size // FRAME_SAMPLES
        finally:
            # One hand-over per send burst, not per message. Never later than the burst:
            # the recorder commits agent audio once the caller's position passes it, and
            # a clear (sent next) must find this burst's audio already placed.
            if self._agent_rec is not None:
                self._agent_rec.flush()
        if not self._control and not playout.has_frame() and self._policy.take_turn_mark():
            name = playout.new_mark("turn").name
            await self._sink.send_text(mark_message(self._sid, name))
        if sent:
            self._stats.frames_out += sent
            if self._chunk_received is not None and self._metrics:
                self._metrics.model_to_caller(time.perf_counter() - self._chunk_received)
        self._chunk_received = None
        if self._policy.exit is not None:
            self._wake_watchdog()  # it waits for playback to go idle
