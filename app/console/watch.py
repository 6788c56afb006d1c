"""`WatchedRecorder`: the call's recorder, teed to the console's event bus.

The bridge already reports everything a watcher wants to see (transcripts, tool calls,
barge-ins, reconnects, audio in batches) to its recorder. Wrapping the recorder, rather
than adding calls to the bridge, keeps the bridge's hot path as it is: each method
forwards to the real recorder, then publishes with `put_nowait` (never awaits). Work
that only a watcher needs (audio for listen-in, the latency gate) is skipped unless
someone watches this call.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.call.info import CallInfo
from app.call.ports import CallRecording, RecorderFactory, RecordingOutcome
from app.console.events import EventBus
from app.recording.record import iso_utc

RATE = 8000
FRAME = 160
# int16 RMS of a 20 ms frame above which the caller counts as speaking (about -38 dBFS).
VOICED_RMS = 400.0
# Agent audio starting this long after the previous agent audio ended is a new turn.
TURN_GAP_SAMPLES = 4 * FRAME


def audio_channel(call_sid: str) -> str:
    """Listen-in audio travels on its own channel: transcript watchers never carry it."""
    return f"{call_sid}/audio"


class ResponseLatency:
    """Per-turn response latency on the call clock: end of caller speech -> agent audio.

    Measured where the caller hears it (the agent audio's scheduled play position), so it
    includes the model, the bridge and the playout lead: what a caller experiences.
    """

    def __init__(self) -> None:
        self.voiced_until = -1  # call-clock sample where the caller last spoke
        self._agent_until = -1
        self._answered = -1

    def caller(self, at_sample: int, pcm: NDArray[np.int16]) -> None:
        frames = pcm.size // FRAME
        if frames == 0:
            return
        blocks = pcm[: frames * FRAME].reshape(frames, FRAME).astype(np.float32)
        voiced = np.flatnonzero(np.sqrt(np.mean(blocks * blocks, axis=1)) > VOICED_RMS)
        if voiced.size:
            self.voiced_until = at_sample + int(voiced[-1] + 1) * FRAME

    def agent(self, at_sample: int, samples: int) -> float | None:
        """Seconds of latency when this agent audio starts a reply to new caller speech."""
        new_turn = at_sample - self._agent_until > TURN_GAP_SAMPLES
        self._agent_until = max(self._agent_until, at_sample + samples)
        if not new_turn or self.voiced_until <= self._answered:
            return None
        if self.voiced_until > at_sample:
            return None  # the agent started while the caller still spoke
        self._answered = self.voiced_until
        return (at_sample - self.voiced_until) / RATE


class TeedRecorders:
    """A `RecorderFactory` whose recordings are teed to the bus (wraps the real factory)."""

    def __init__(self, inner: RecorderFactory, bus: EventBus) -> None:
        self._inner = inner
        self._bus = bus

    def __call__(self, call: CallInfo) -> CallRecording:
        summary = {
            "from": call.from_number,
            "to": call.to_number,
            "direction": call.direction,
            "agent": call.parameters.get("agent"),  # as the webhook chose it (token-covered)
        }
        return WatchedRecorder(self._inner(call), self._bus, call.call_sid, summary)


class WatchedRecorder:
    """A `CallRecording` (the bridge's `Recorder` plus its lifecycle) that also publishes."""

    def __init__(
        self, inner: CallRecording, bus: EventBus, call_sid: str, summary: Mapping[str, Any]
    ) -> None:
        self._inner = inner
        self._bus = bus
        self._sid = call_sid
        self._audio = audio_channel(call_sid)
        self._latency = ResponseLatency()
        self._counts = {"turns": 0, "tool_calls": 0, "interruptions": 0, "reconnects": 0}
        self._last_side = ""
        self.summary = {**summary, "call_sid": call_sid, "started_at": iso_utc(datetime.now(UTC))}
        bus.publish(call_sid, {"type": "call.started", "call": dict(self.summary)})

    # --- audio -------------------------------------------------------------------
    def caller_audio(self, at_sample: int, pcm: NDArray[np.int16]) -> None:
        self._inner.caller_audio(at_sample, pcm)
        if self._bus.watched(self._sid):
            self._latency.caller(at_sample, pcm)
        if self._bus.watched(self._audio):
            self._send_audio("caller", at_sample, pcm)

    def agent_audio(self, at_sample: int, pcm: NDArray[np.int16]) -> None:
        self._inner.agent_audio(at_sample, pcm)
        if self._bus.watched(self._sid):
            seconds = self._latency.agent(at_sample, pcm.size)
            if seconds is not None:
                self._emit("latency", at_sample, seconds=round(seconds, 3))
        if self._bus.watched(self._audio):
            self._send_audio("agent", at_sample, pcm)

    def agent_cleared(self, at_sample: int) -> None:
        self._inner.agent_cleared(at_sample)
        if self._bus.watched(self._audio):
            self._bus.publish(self._audio, {"type": "audio.cleared", "at": at_sample})

    def advance(self, now_sample: int) -> None:
        self._inner.advance(now_sample)

    # --- call record -------------------------------------------------------------
    def transcript(self, side: Any, text: str, at_sample: int) -> None:
        self._inner.transcript(side, text, at_sample)
        if side != self._last_side:
            self._last_side = side
            self._count("turns")
        self._emit("transcript", at_sample, side=side, text=text)

    def tool_call(
        self,
        call_id: str,
        name: str,
        args: Mapping[str, Any],
        result: Mapping[str, Any],
        ok: bool,
        duration_s: float,
        at_sample: int,
    ) -> None:
        self._inner.tool_call(call_id, name, args, result, ok, duration_s, at_sample)
        self._count("tool_calls")
        self._emit(
            "tool_call", at_sample, call_id=call_id, name=name, args=dict(args),
            result=result, ok=ok, duration_s=round(duration_s, 3),
        )  # fmt: skip

    def interruption(self, at_sample: int) -> None:
        self._inner.interruption(at_sample)
        self._count("interruptions")
        self._emit("interruption", at_sample)

    def reconnect(self, at_sample: int, reason: str, kind: str = "resumed") -> None:
        self._inner.reconnect(at_sample, reason, kind)
        self._count("reconnects")
        self._emit("reconnect", at_sample, reason=reason, kind=kind)

    def usage(self, mapping: Mapping[str, object]) -> None:
        self._inner.usage(mapping)

    def dtmf(self, digit: str, at_sample: int) -> None:
        self._inner.dtmf(digit, at_sample)
        self._emit("dtmf", at_sample, digit=digit)

    def note(self, kind: str, detail: str, at_sample: int) -> None:
        self._inner.note(kind, detail, at_sample)
        self._emit("note", at_sample, kind=kind, detail=detail)

    # --- closing -----------------------------------------------------------------
    async def aclose(self, end_reason: str) -> RecordingOutcome:
        result = await self._inner.aclose(end_reason)
        # After the record is written, so a watcher that follows the link finds it.
        self._bus.publish(
            self._sid, {"type": "call.ended", "call_sid": self._sid, "end_reason": end_reason}
        )
        return result

    # --- publishing --------------------------------------------------------------
    def _emit(self, event_type: str, at_sample: int, **fields: Any) -> None:
        self._bus.publish(
            self._sid, {"type": event_type, "at_s": round(at_sample / RATE, 3), **fields}
        )

    def _count(self, key: str) -> None:
        self._counts[key] += 1
        self.summary[key] = self._counts[key]
        update = {key: self._counts[key]}
        self._bus.publish(
            self._sid, {"type": "call.updated", "call_sid": self._sid, "call": update}
        )

    def _send_audio(self, side: str, at_sample: int, pcm: NDArray[np.int16]) -> None:
        # Little-endian int16 bytes: what the listen-in socket sends as-is.
        data = pcm.astype("<i2", copy=False).tobytes()
        self._bus.publish(
            self._audio, {"type": "audio", "side": side, "at": at_sample, "pcm": data}
        )
