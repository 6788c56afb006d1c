"""The per-call bridge between a Twilio Media Stream and a Gemini Live session.

The one place with per-call concurrency: a task group holding
- the inbound pump: Twilio frames -> mu-law decode -> 8k->16k -> Live,
- the Live pump: Live events -> 24k->8k -> playout queue; transcripts, tools, barge-in,
- the sender: paced 20 ms frames and marks -> Twilio,
- the hang-up watchdog.
Any task ending the call raises `CallEnded`; the group cancels the rest together.
Nothing here touches another call: every object is this call's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from app.call.info import CallEnded, CallInfo, CallStats, EndReason
from app.call.playout import FRAME_SAMPLES, RATE, Playout
from app.call.ports import BridgeMetrics, Recorder, ToolRunner, TwilioSink
from app.errors import LiveClosedError, LiveSetupError
from app.live.events import (
    AgentAudio,
    AgentTranscript,
    CallerTranscript,
    GenerationComplete,
    GoAway,
    Interrupted,
    LiveConnector,
    LiveSession,
    ResumptionUpdate,
    ToolCall,
    ToolCallCancellation,
    ToolResponse,
    TurnComplete,
    Usage,
)
from app.live.link import LiveLink, Reconnected
from telephony.messages import (
    Dtmf,
    Mark,
    Media,
    Stop,
    TwilioMessage,
    clear_message,
    mark_message,
    media_message,
)
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from telephony.resample import inbound_resampler, outbound_resampler


@dataclass
class BridgeConfig:
    greeting: str | None = None
    max_lead_seconds: float = 0.2
    hangup_fallback_seconds: float = 10.0
    # After end_call, how long to wait for the model to start its goodbye.
    goodbye_grace_seconds: float = 1.5
    max_reconnects: int = 3
    input_pause_seconds: float = 1.0


@dataclass
class _Exit:
    """A pending hang-up or transfer: performed once the goodbye has been heard."""

    reason: EndReason
    requested_at: float
    transfer_to: str | None = None
    announcement: str | None = None
    mark: str | None = None
    immediate: bool = False  # no grace for the model to start a goodbye


class _AudioBatch:
    """Caller audio for the recorder, handed over in runs of contiguous frames.

    Each hand-over wakes the recorder's writer thread; at one per 20 ms frame per call,
    those wake-ups (and the GIL switches they force on the event loop) cost more than
    the recording itself. Placement is by position, so the file is the same; commits
    (driven by the caller's position) just happen up to one batch later.
    """

    __slots__ = ("_limit", "_next", "_parts", "_place", "_start")

    def __init__(self, place: Callable[[int, NDArray[np.int16]], None], frames: int) -> None:
        self._place = place
        self._limit = frames
        self._parts: list[NDArray[np.int16]] = []
        self._start = 0
        self._next = 0

    def add(self, at_sample: int, pcm: NDArray[np.int16]) -> None:
        if self._parts and at_sample != self._next:
            self.flush()
        if not self._parts:
            self._start = at_sample
        self._parts.append(pcm)
        self._next = at_sample + pcm.size
        if len(self._parts) >= self._limit:
            self.flush()

    def flush(self) -> None:
        parts, self._parts = self._parts, []
        if parts:
            self._place(self._start, parts[0] if len(parts) == 1 else np.concatenate(parts))


RECORDER_BATCH_FRAMES = 10  # 200 ms: well inside the recorder's 0.5 s flush interval
# Agent audio is handed over once per send burst (flushed before `_send_ready_frames`
# returns); a burst is at most the 200 ms playout lead, so this limit is only a cap.
AGENT_BATCH_FRAMES = 50


class CallBridge:
    def __init__(
        self,
        call: CallInfo,
        sink: TwilioSink,
        connector: LiveConnector,
        *,
        config: BridgeConfig,
        prewarmed: Awaitable[LiveSession] | None = None,
        recorder: Recorder | None = None,
        metrics: BridgeMetrics | None = None,
        apology: NDArray[np.int16] | None = None,
        hangup: Callable[[str], Awaitable[None]] | None = None,
        transfer: Callable[[str, str, str | None], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self.call = call
        self._sink = sink
        self._config = config
        self._recorder = recorder
        self._caller_rec: _AudioBatch | None = None
        if recorder is not None:
            self._caller_rec = _AudioBatch(recorder.caller_audio, RECORDER_BATCH_FRAMES)
        self._agent_rec: _AudioBatch | None = None
        if recorder is not None:
            self._agent_rec = _AudioBatch(recorder.agent_audio, AGENT_BATCH_FRAMES)
        self._metrics = metrics
        self._apology = apology
        self._rest_hangup = hangup
        self._rest_transfer = transfer
        self._clock = clock
        self.log = log or structlog.get_logger().bind(
            call_sid=call.call_sid, stream_sid=call.stream_sid
        )
        self._log = self.log
        # A pre-warmed session has already been asked for the greeting.
        self.prewarmed = prewarmed is not None
        self.link = LiveLink(
            connector, first=prewarmed, max_reconnects=config.max_reconnects, log=self._log
        )
        self.tools: ToolRunner | None = None
        self.playout = Playout(max_lead_samples=int(config.max_lead_seconds * RATE))
        self._inbound = inbound_resampler()
        self._outbound = outbound_resampler()
        self._send_lock = asyncio.Lock()
        self._audio_ready = asyncio.Event()
        self._wake_watchdog = asyncio.Event()
        self._started = clock()
        self._model_in_turn = False
        self._last_agent_audio = 0.0
        self._turn_mark_wanted = False
        self._exit: _Exit | None = None
        self._closing = False
        self._caller_speech_end: float | None = None
        self._awaiting_response = False
        self._last_frame_at: float | None = None
        self._stream_end_sent = False
        self._received_at: Callable[[], float] = time.perf_counter
        self.end_reason: EndReason | None = None
        self.stats = CallStats()

    # --- clock -----------------------------------------------------------------
    def now_sample(self) -> int:
        return int((self._clock() - self._started) * RATE)

    # --- lifecycle -------------------------------------------------------------
    async def run(
        self,
        inbound: AsyncIterator[TwilioMessage],
        *,
        received_at: Callable[[], float] | None = None,
    ) -> EndReason:
        """Bridge the call until it ends; returns why it ended. Never raises for a call fault.

        `received_at` gives the `time.perf_counter()` at which the message `inbound` just
        yielded came off the socket (before parsing); without it, timing starts when the
        bridge gets the parsed message.
        """
        if received_at is not None:
            self._received_at = received_at
        # Cancelled (server shutdown) unless the call ends or fails first. No `except*`
        # for CancelledError: that would re-raise it wrapped in a BaseExceptionGroup.
        reason = EndReason.SHUTDOWN
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._inbound_pump(inbound))
                group.create_task(self._live_pump())
                group.create_task(self._sender())
                group.create_task(self._watchdog())
            reason = EndReason.ERROR  # unreachable: every pump ends the call by raising
        except* CallEnded as ended:
            reason = _first_reason(ended)
        except* Exception as failed:
            reason = EndReason.ERROR
            for exc in failed.exceptions:
                self._log.error("bridge.failed", error=repr(exc), exc_info=exc)
        finally:
            self.end_reason = reason
            await self._shutdown()
        return reason

    async def _shutdown(self) -> None:
        self._flush_recording()
        if self.tools is not None:
            with contextlib.suppress(Exception):
                await self.tools.aclose()
        with contextlib.suppress(Exception):
            await self.link.close()

    def _flush_recording(self) -> None:
        if self._caller_rec is not None:
            self._caller_rec.flush()

    async def end(self, reason: EndReason) -> None:
        """Close the stream from our side: Twilio moves on to `<Hangup/>`."""
        self._log.info("call.ending", reason=reason.value)
        with contextlib.suppress(Exception):
            await self._sink.close(1000, reason.value)
        raise CallEnded(reason)

    # --- caller -> model -------------------------------------------------------
    async def _inbound_pump(self, inbound: AsyncIterator[TwilioMessage]) -> None:
        async for message in inbound:
            if isinstance(message, Media):
                await self._on_media(message)
            elif isinstance(message, Mark):
                await self._on_mark(message.name)
            elif isinstance(message, Dtmf):
                self._log.info("caller.dtmf", digit=message.digit)
                if self._recorder:
                    self._recorder.dtmf(message.digit, self.now_sample())
            elif isinstance(message, Stop):
                self._log.info("caller.stop")
                raise CallEnded(EndReason.CALLER_HANGUP)
        self._log.info("caller.disconnected")
        raise CallEnded(EndReason.CALLER_HANGUP)

    async def _on_media(self, message: Media) -> None:
        # Bridge-added latency, caller -> model: frame off the Twilio socket -> its audio
        # handed to the Live socket (the SDK's serialisation and the write included).
        received = self._received_at()
        self.stats.frames_in += 1
        pcm8 = ulaw_to_pcm16(message.payload)
        if self._caller_rec is not None:
            self._caller_rec.add(message.timestamp * RATE // 1000, pcm8)
        self._track_caller_speech(pcm8)
        pcm16 = self._inbound.process(pcm8)
        await self.link.send_audio(pcm16.tobytes())
        self._last_frame_at = self._clock()
        self._stream_end_sent = False
        if self._metrics:
            self._metrics.caller_to_model(time.perf_counter() - received)

    def _track_caller_speech(self, pcm8: NDArray[np.int16]) -> None:
        # A crude energy gate, only for the response-latency figure (end of caller
        # speech -> first agent audio); the model does its own voice detection.
        # mean(|x|) > 300, in integers (exact, and without np.mean's per-call overhead).
        loud = pcm8.size > 0 and int(np.abs(pcm8).sum()) > 300 * pcm8.size
        if loud:
            self._caller_speech_end = self._clock()
            self._awaiting_response = True

    # --- model -> caller -------------------------------------------------------
    async def _live_pump(self) -> None:
        try:
            await self.link.open()
        except LiveSetupError as exc:
            self._log.error("live.setup_failed", cause=str(exc))
            await self._apologise_and_end("live_setup_failed")
            return
        self._log.info(
            "live.connected",
            setup_s=round(self.link.session.info.setup_seconds, 3) if self.link.session else None,
        )
        if self._config.greeting and not self.prewarmed:
            await self.link.send_text(self._config.greeting)
        try:
            async for event in self.link.events():
                await self._on_event(event)
        except LiveClosedError as exc:
            self._log.error("live.lost", cause=str(exc))
            await self._apologise_and_end("live_lost")

    async def _on_event(self, event: Any) -> None:
        match event:
            case AgentAudio():
                await self._on_agent_audio(event)
            case Interrupted():
                await self._on_interrupted()
            case TurnComplete() | GenerationComplete():
                if isinstance(event, TurnComplete):
                    self._model_in_turn = False
                self.playout.flush_partial()
                self._turn_mark_wanted = True
                self._audio_ready.set()
                self._wake_watchdog.set()
            case CallerTranscript(text=text):
                self._log.info("transcript.caller", text=text)
                if self._recorder:
                    self._recorder.transcript("caller", text, self.now_sample())
            case AgentTranscript(text=text):
                self._log.info("transcript.agent", text=text)
                if self._recorder:
                    self._recorder.transcript("agent", text, self.now_sample())
            case ToolCall():
                self._log.info("tool.call", tool=event.name, call_id=event.call_id)
                if self.tools is None:
                    await self.link.send_tool_responses(
                        [ToolResponse(event.call_id, event.name, {"error": "no tools enabled"})]
                    )
                else:
                    self.tools.start(event.call_id, event.name, event.args)
            case ToolCallCancellation(call_ids=ids):
                self._log.info("tool.cancelled", call_ids=list(ids))
                if self.tools is not None:
                    self.tools.cancel(ids)
            case Usage():
                if self._recorder:
                    self._recorder.usage(
                        {
                            "prompt_tokens": event.prompt_tokens,
                            "response_tokens": event.response_tokens,
                            "total_tokens": event.total_tokens,
                        }
                    )
            case Reconnected():
                self.stats.reconnects += 1
                self._model_in_turn = False
                if self._recorder:
                    self._recorder.reconnect(self.now_sample(), event.reason)
                if self._metrics:
                    self._metrics.reconnected()
            case GoAway() | ResumptionUpdate():
                pass

    async def _on_agent_audio(self, event: AgentAudio) -> None:
        if self._closing:
            return  # a notice is playing; the call is ending
        received = time.perf_counter()
        self._model_in_turn = True
        self._last_agent_audio = self._clock()
        pcm24 = np.frombuffer(event.pcm[: len(event.pcm) // 2 * 2], dtype="<i2").astype(np.int16)
        if event.rate != 24000:
            self._log.warning("live.unexpected_rate", rate=event.rate)
        pcm8 = self._outbound.process(pcm24)
        was_empty = not self.playout.has_frame()
        self.playout.push(pcm8)
        if self._awaiting_response and self._caller_speech_end is not None:
            self._awaiting_response = False
            if self._metrics:
                self._metrics.response_latency(self._clock() - self._caller_speech_end)
        if self.stats.first_agent_audio_s is None:
            self.stats.first_agent_audio_s = self._clock() - self._started
        if was_empty:
            # Bridge-added latency, model -> caller: the SDK's event in hand -> the chunk's
            # frames (as many as pacing allows) written to Twilio. Only chunks that pacing
            # lets out at once are timed: a chunk queued behind audio still ahead of
            # playback waits on purpose (it would otherwise wait in Twilio's buffer), and
            # that wait is not bridge latency (late frames show up as caller underruns).
            sent = await self._send_ready_frames()
            if sent and self._metrics:
                self._metrics.model_to_caller(time.perf_counter() - received)
        self._audio_ready.set()

    async def _on_interrupted(self) -> None:
        if self._closing:
            return  # the clip playing is our notice, not the model's turn: it plays out
        received = time.perf_counter()
        self.stats.interruptions += 1
        self._model_in_turn = False
        async with self._send_lock:
            stopped_at = self.playout.clear(self.now_sample())
            self._outbound.reset()
            self._turn_mark_wanted = False
            await self._sink.send_text(clear_message(self.call.stream_sid))
        self._log.info("agent.interrupted")
        if self._metrics:
            self._metrics.interrupted(time.perf_counter() - received)
        if self._recorder:
            self._flush_recording()  # the caller's position as of the clear goes first
            self._recorder.agent_cleared(stopped_at)
            self._recorder.interruption(stopped_at)
        if self._exit is not None and not self._exit.immediate:
            # The caller talked over the goodbye: the conversation goes on.
            self._log.info("call.exit_cancelled", reason=self._exit.reason.value)
            self._exit = None

    # --- sender ----------------------------------------------------------------
    async def _sender(self) -> None:
        while True:
            await self._audio_ready.wait()
            self._audio_ready.clear()
            # Drain the queue at the pacing rate. Time passes while a burst is sent, so
            # frames may be due again at once: keep going until none is queued, never
            # rely on new audio arriving to wake us (a notice or a last turn gets none).
            while self.playout.has_frame():
                await self._send_ready_frames()
                wait = self.playout.wait_samples(self.now_sample())
                if self.playout.has_frame() and wait:
                    await asyncio.sleep(wait / RATE)

    async def _send_ready_frames(self) -> int:
        """Send what the pacing budget allows now (normally one message of whole
        frames, see `Playout`), then any due marks. Returns the frames sent."""
        sent = 0
        async with self._send_lock:
            try:
                while (burst := self.playout.next_burst(self.now_sample())) is not None:
                    payload = pcm16_to_ulaw(burst.pcm)
                    await self._sink.send_text(media_message(self.call.stream_sid, payload))
                    if self._agent_rec is not None:
                        self._agent_rec.add(burst.start_sample, burst.pcm)
                    sent += burst.pcm.size // FRAME_SAMPLES
                    if self.playout.progress_mark_due():
                        await self._send_mark("progress")
            finally:
                # One hand-over per send burst, not per message. Never later than
                # the burst: the recorder commits agent audio once the
                # caller's position passes it, so it must arrive ahead of that.
                if self._agent_rec is not None:
                    self._agent_rec.flush()
            if not self.playout.has_frame() and self._turn_mark_wanted:
                self._turn_mark_wanted = False
                await self._send_mark("turn")
        self.stats.frames_out += sent
        if sent or self._exit is not None:
            self._wake_watchdog.set()
        return sent

    async def _send_mark(self, purpose: str) -> str:
        mark = self.playout.new_mark(purpose)
        await self._sink.send_text(mark_message(self.call.stream_sid, mark.name))
        return mark.name

    async def _on_mark(self, name: str) -> None:
        mark, played = self.playout.mark_echoed(name)
        if name.startswith("exit"):
            self._log.debug(
                "call.exit_mark_echoed",
                mark=name,
                played=played,
                waiting_for=self._exit.mark if self._exit else None,
            )
        if self._exit is not None and self._exit.mark == name:
            if played:
                await self._perform_exit(self._exit)
            else:
                self._exit.mark = None
        elif mark is None and not played:
            self._log.debug("mark.discarded", mark=name)

    # --- hang-up and transfer --------------------------------------------------
    async def request_exit(
        self, reason: EndReason, transfer_to: str | None = None, announcement: str | None = None
    ) -> None:
        """Called by `end_call`/`transfer_call`: act once the goodbye has been heard."""
        self._exit = _Exit(reason, self._clock(), transfer_to, announcement)
        self._log.info("call.exit_requested", reason=reason.value)
        self._wake_watchdog.set()

    async def _watchdog(self) -> None:
        """Watches a pending exit: sends its mark once playback is idle; the fallback."""
        while True:
            try:
                async with asyncio.timeout(0.25):
                    await self._wake_watchdog.wait()
            except TimeoutError:
                pass
            self._wake_watchdog.clear()
            await self._check_input_pause()
            pending = self._exit
            if pending is None:
                continue
            now = self._clock()
            if now - pending.requested_at > self._config.hangup_fallback_seconds:
                self._log.warning("call.exit_fallback", reason=pending.reason.value)
                await self._perform_exit(pending)
            if pending.mark is not None or self._model_in_turn or self.playout.has_frame():
                continue
            quiet_since = max(pending.requested_at, self._last_agent_audio)
            if not pending.immediate and now - quiet_since < self._config.goodbye_grace_seconds:
                continue
            async with self._send_lock:
                # Note the mark before sending it: with playback idle, the echo comes
                # back at once and may be handled before the send returns.
                mark = self.playout.new_mark("exit")
                pending.mark = mark.name
                await self._sink.send_text(mark_message(self.call.stream_sid, mark.name))
            self._log.debug("call.exit_mark_sent", mark=mark.name)

    async def _check_input_pause(self) -> None:
        # Under automatic VAD the model should hear that input paused (> ~1 s without
        # frames, e.g. a stalled stream), or it may wait for more speech.
        if self._last_frame_at is None or self._stream_end_sent:
            return
        if self._clock() - self._last_frame_at > self._config.input_pause_seconds:
            self._stream_end_sent = True
            await self.link.send_audio_stream_end()

    async def _perform_exit(self, pending: _Exit) -> None:
        if pending.reason is EndReason.TRANSFERRED and pending.transfer_to:
            if self._rest_transfer is not None:
                try:
                    await self._rest_transfer(
                        self.call.call_sid, pending.transfer_to, pending.announcement
                    )
                except Exception as exc:
                    self._log.error("call.transfer_failed", error=str(exc))
                    await self.end(EndReason.ERROR)
            raise CallEnded(EndReason.TRANSFERRED)
        if self._rest_hangup is not None:
            try:
                await self._rest_hangup(self.call.call_sid)
            except Exception as exc:
                # Closing the stream still ends the call through the TwiML's <Hangup/>.
                self._log.warning("call.rest_hangup_failed", error=str(exc))
        await self.end(pending.reason)

    # --- failure ---------------------------------------------------------------
    async def _apologise_and_end(self, cause: str) -> None:
        """The agent can no longer help: play the bundled apology, then hang up."""
        if self._recorder:
            self._recorder.note("live_failure", cause, self.now_sample())
        await self.say_and_end(self._apology, EndReason.LIVE_FAILED)
        # The exit mark's echo ends the call; this is the fallback if it never comes.
        clip_seconds = 0 if self._apology is None else self._apology.size / RATE
        await asyncio.sleep(clip_seconds + 3.0)
        await self.end(EndReason.LIVE_FAILED)

    async def say_and_end(self, clip: NDArray[np.int16] | None, reason: EndReason) -> None:
        """Stop the agent, play `clip` to the caller, then end the call with `reason`.

        Used for the apology and for the drain notice at shutdown; may be called from
        another task (the drain), so it only queues work for the bridge's own tasks.
        """
        self._closing = True
        async with self._send_lock:
            if self.playout.queued_samples or self.playout.playing_until() > self.now_sample():
                stopped_at = self.playout.clear(self.now_sample())
                self._outbound.reset()
                await self._sink.send_text(clear_message(self.call.stream_sid))
                if self._recorder:
                    self._flush_recording()
                    self._recorder.agent_cleared(stopped_at)
        self._model_in_turn = False
        if clip is not None and clip.size:
            self.playout.push(clip)
            self.playout.flush_partial()
            self._audio_ready.set()
        self._exit = _Exit(reason, self._clock(), immediate=True)
        self._wake_watchdog.set()

    # --- tools -----------------------------------------------------------------
    async def deliver_tool_result(self, response: ToolResponse) -> None:
        await self.link.send_tool_responses([response])


def _first_reason(group: BaseExceptionGroup[CallEnded]) -> EndReason:
    for exc in group.exceptions:
        if isinstance(exc, CallEnded):
            return exc.reason
        if isinstance(exc, BaseExceptionGroup):
            return _first_reason(exc)
    return EndReason.ERROR
