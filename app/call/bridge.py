"""The per-call bridge between a Twilio Media Stream and a Gemini Live session.

The one place with per-call concurrency, and only its I/O shell: a task group holding
- the inbound pump: Twilio frames -> mu-law decode -> 8k->16k -> Live; mark echoes,
- the Live pump: Live events -> 24k->8k -> playout queue; transcripts, tools, barge-in,
- the writer (`Outbound`): the one task that sends to Twilio (clears, marks, paced audio),
- the watchdog: ticks the turn/exit policy (`CallPolicy`) and performs what it asks.
When to hang up, and whether a barge-in cancels it, is the policy's call; how audio is
paced is `Playout`'s. Any task ending the call raises `CallEnded`; the group cancels the
rest together. Nothing here touches another call: every object is this call's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from app.call.audio_batch import AudioBatch
from app.call.info import BridgeConfig, CallEnded, CallInfo, CallStats, EndReason, first_reason
from app.call.outbound import Outbound
from app.call.playout import RATE, Playout
from app.call.policy import Action, CallPolicy, Exit
from app.call.ports import (
    ActivityInput,
    BridgeMetrics,
    KeypadInput,
    Recorder,
    ToolRunner,
    TwilioSink,
)
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
from app.logs import suppress_logged
from telephony.messages import Dtmf, Mark, Media, Stop, TwilioMessage
from telephony.mulaw import ulaw_to_pcm16
from telephony.resample import inbound_resampler, outbound_resampler

_PCM16LE = np.dtype("<i2")  # made once: a dtype given as a string is parsed on every call
RECORDER_BATCH_FRAMES = 10  # 200 ms: well inside the recorder's 0.5 s flush interval
WATCHDOG_TICK_S = 0.25  # input-pause and goodbye-grace resolution
APOLOGY_FALLBACK_S = 3.0  # after the apology clip: hang up even without the mark's echo


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
        self._caller_rec: AudioBatch | None = None
        if recorder is not None:
            self._caller_rec = AudioBatch(recorder.caller_audio, RECORDER_BATCH_FRAMES)
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
        self.keypad: KeypadInput | None = None  # None: digits are only recorded
        self.activity: ActivityInput | None = None  # None: Gemini detects speech itself
        self.stats = CallStats()
        self.policy = CallPolicy(
            goodbye_grace_s=config.goodbye_grace_seconds,
            fallback_s=config.hangup_fallback_seconds,
            input_pause_s=config.input_pause_seconds,
        )
        self.playout = Playout(
            max_lead_samples=int(config.max_lead_seconds * RATE), resampler=outbound_resampler()
        )
        self._wake_watchdog = asyncio.Event()
        self.outbound = Outbound(
            sink,
            call.stream_sid,
            self.playout,
            self.now_sample,
            policy=self.policy,
            stats=self.stats,
            recorder=recorder,
            metrics=metrics,
            flush_caller=self._flush_recording,
            wake_watchdog=self._wake_watchdog.set,
            log=self._log,
        )
        self._to_live = inbound_resampler()
        self._started = clock()
        self._received_at: Callable[[], float] = time.perf_counter
        self.end_reason: EndReason | None = None

    def now_sample(self) -> int:
        """The call clock: samples at 8 kHz since the bridge was made."""
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
                group.create_task(self.outbound.run())
                group.create_task(self._watchdog())
            reason = EndReason.ERROR  # unreachable: the pumps end the call by raising
        except* CallEnded as ended:
            reason = first_reason(ended)
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
            with suppress_logged(self._log, "bridge.shutdown_failed", step="tools"):
                await self.tools.aclose()
        if self.keypad is not None:
            with suppress_logged(self._log, "bridge.shutdown_failed", step="keypad"):
                await self.keypad.aclose()
        with suppress_logged(self._log, "bridge.shutdown_failed", step="live"):
            await self.link.close()

    def _flush_recording(self) -> None:
        if self._caller_rec is not None:
            self._caller_rec.flush()

    async def end(self, reason: EndReason) -> None:
        """Close the stream from our side: Twilio moves on to `<Hangup/>`."""
        self._log.info("call.ending", reason=reason.value)
        with suppress_logged(self._log, "call.close_failed"):
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
                if self.keypad is not None:
                    self.keypad.press(message.digit)
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
        # A crude energy gate, only for the response-latency figure (end of caller
        # speech -> first agent audio); the model does its own voice detection.
        # mean(|x|) > 300, in integers (exact, and without np.mean's per-call overhead).
        loud = pcm8.size > 0 and int(np.abs(pcm8).sum()) > 300 * pcm8.size
        self.policy.caller_frame(self._clock(), loud)
        if self.activity is not None:
            await self.activity.frame(loud)  # a turn's start goes before its audio
        pcm16 = self._to_live.process(pcm8)
        await self.link.send_audio(pcm16.tobytes())
        if self._metrics:
            self._metrics.caller_to_model(time.perf_counter() - received)

    # --- model -> caller -------------------------------------------------------
    async def _live_pump(self) -> None:
        try:
            await self.link.open()
        except LiveSetupError as exc:
            self._log.error("live.setup_failed", cause=str(exc))
            await self._apologise("live_setup_failed")
            return
        setup_s = self.link.session.info.setup_seconds if self.link.session else None
        self._log.info("live.connected", setup_s=None if setup_s is None else round(setup_s, 3))
        if setup_s is not None and self._metrics and not self.prewarmed:
            self._metrics.live_setup(setup_s)  # a pre-warmed one was counted by the pool
        if self._config.greeting and not self.prewarmed:
            await self.link.send_text(self._config.greeting)
        try:
            async for event in self.link.events():
                await self._on_event(event)
        except LiveClosedError as exc:
            self._log.error("live.lost", cause=str(exc))
            await self._apologise("live_lost")

    async def _on_event(self, event: Any) -> None:
        match event:
            case AgentAudio():
                await self._on_agent_audio(event)
            case Interrupted():
                if await self._on_interrupted():
                    # The writer has the clear (the socket was busy): yield to it once,
                    # so the clear leaves before more buffered Live events are handled.
                    await asyncio.sleep(0)
            case TurnComplete() | GenerationComplete():
                if isinstance(event, TurnComplete):
                    self.policy.turn_complete()
                else:
                    self.policy.generation_complete()
                self.playout.flush_partial()
                self.outbound.wake_if_idle()  # the padded last frame, then the turn mark
                self._wake_watchdog.set()
            case CallerTranscript(text=text) | AgentTranscript(text=text):
                side = "caller" if isinstance(event, CallerTranscript) else "agent"
                self._log.info(f"transcript.{side}", text=text)
                if self._recorder:
                    self._recorder.transcript(side, text, self.now_sample())
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
                counts = event.counts()
                if self._recorder:
                    self._recorder.usage(counts)
                if self._metrics:
                    self._metrics.live_tokens_used(counts)
            case Reconnected():
                self.stats.reconnects += 1
                self.policy.reconnected()
                if self._recorder:
                    self._recorder.reconnect(self.now_sample(), event.reason, event.kind)
                if self._metrics:
                    self._metrics.reconnected(event.kind)
                    self._metrics.live_setup(event.setup_seconds)
            case GoAway() | ResumptionUpdate():
                pass

    async def _on_agent_audio(self, event: AgentAudio) -> None:
        """Queue the chunk; what pacing lets out now goes out at once (see `Playout`)."""
        if self.policy.closing:
            return  # a notice is playing; the call is ending
        received = time.perf_counter()
        now = self._clock()
        # A read-only view of the chunk (no copies): the resampler only reads it, when
        # the burst it belongs to goes out.
        pcm24 = np.frombuffer(event.pcm, dtype=_PCM16LE, count=len(event.pcm) // 2)
        if event.rate != 24000:
            self._log.warning("live.unexpected_rate", rate=event.rate)
        self.playout.push_source(pcm24)
        latency = self.policy.agent_audio(now)
        if latency is not None and self._metrics:
            self._metrics.response_latency(latency)
        if self.stats.first_agent_audio_s is None:
            self.stats.first_agent_audio_s = now - self._started
        if self.playout.ready(self.now_sample()):
            await self.outbound.audio_queued(received)
        else:
            # Paced (behind audio still ahead of playback): the writer's timer covers it,
            # unless the writer sleeps without one (the queue was empty).
            self.outbound.wake_if_idle()

    async def _on_interrupted(self) -> bool:
        """Clear the agent's audio; True when the clear was queued for the writer."""
        received = time.perf_counter()
        barge_in = self.policy.interrupted()
        if barge_in is None:
            return False  # the clip playing is our notice, not the model's turn: it plays out
        self.stats.interruptions += 1
        stopped_at = self.playout.clear(self.now_sample())  # and its resampler's history
        sent = await self.outbound.clear_now(stopped_at, received)
        if barge_in.cancelled_exit is not None:
            # The caller talked over the goodbye: the conversation goes on.
            reason = barge_in.cancelled_exit.reason.value
            self._log.info("call.exit_cancelled", reason=reason)
        return not sent

    async def _on_mark(self, name: str) -> None:
        mark, played = self.playout.mark_echoed(name)
        pending = self.policy.mark_echoed(name, played)
        if name.startswith("exit"):
            self._log.debug("call.exit_mark_echoed", mark=name, played=played)
        if pending is not None:
            await self._perform_exit(pending)
        elif mark is None and not played:
            self._log.debug("mark.discarded", mark=name)

    # --- hang-up and transfer --------------------------------------------------
    async def request_exit(
        self, reason: EndReason, transfer_to: str | None = None, announcement: str | None = None
    ) -> None:
        """Called by `end_call`/`transfer_call`: act once the goodbye has been heard."""
        if self.policy.request_exit(reason, self._clock(), transfer_to, announcement):
            self._log.info("call.exit_requested", reason=reason.value)
        self._wake_watchdog.set()

    async def _watchdog(self) -> None:
        """Ticks the policy: input pauses, the exit mark once playback is idle, the fallback."""
        while True:
            timeout = WATCHDOG_TICK_S
            deadline = self.policy.next_deadline()
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - self._clock()) + 0.001)
            try:
                async with asyncio.timeout(timeout):
                    await self._wake_watchdog.wait()
            except TimeoutError:
                pass
            self._wake_watchdog.clear()
            for action in self.policy.tick(self._clock(), self.playout.has_frame()):
                if action is Action.END_INPUT and self.activity is not None:
                    await self.activity.pause()  # no audioStreamEnd without automatic VAD
                elif action is Action.END_INPUT:
                    await self.link.send_audio_stream_end()
                elif action is Action.SEND_EXIT_MARK:
                    # Noted before it is sent: with playback idle, the echo comes back at once.
                    self.policy.exit_mark_sent(self.outbound.mark("exit"))
                elif action is Action.EXIT_FALLBACK and self.policy.exit is not None:
                    self._log.warning("call.exit_fallback", reason=self.policy.exit.reason.value)
                    await self._perform_exit(self.policy.exit)

    async def _perform_exit(self, pending: Exit) -> None:
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
    async def _apologise(self, cause: str) -> None:
        """The agent can no longer help: play the bundled apology, then hang up."""
        if self._recorder:
            self._recorder.note("live_failure", cause, self.now_sample())
        # The exit mark's echo ends the call; this is the fallback if it never comes.
        clip_seconds = 0 if self._apology is None else self._apology.size / RATE
        fallback = min(self._config.hangup_fallback_seconds, clip_seconds + APOLOGY_FALLBACK_S)
        self._notice(self._apology, EndReason.LIVE_FAILED, fallback)

    async def say_and_end(self, clip: NDArray[np.int16] | None, reason: EndReason) -> None:
        """Stop the agent, play `clip` to the caller, then end the call with `reason`.

        Used for the drain notice at shutdown; may be called from another task (the
        drain), so it only changes state and queues work for the bridge's own tasks.
        """
        self._notice(clip, reason, None)

    def _notice(
        self, clip: NDArray[np.int16] | None, reason: EndReason, fallback: float | None
    ) -> None:
        if not self.policy.notice_started(reason, self._clock(), fallback):
            return  # the call has ended already
        now = self.now_sample()
        if self.playout.queued_samples or self.playout.playing_until() > now:
            self.outbound.clear(self.playout.clear(now), None)
        if clip is not None and clip.size:
            self.playout.push(clip)
            self.playout.flush_partial()
            self.outbound.kick()
        self._wake_watchdog.set()

    # --- tools -----------------------------------------------------------------
    async def deliver_tool_result(self, response: ToolResponse) -> None:
        await self.link.send_tool_responses([response])
