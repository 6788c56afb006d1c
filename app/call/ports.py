"""The bridge's peers, as small Protocols: tests pass fakes openly, production the real ones."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from app.call.info import CallInfo


class TwilioSink(Protocol):
    """The Media Stream socket, outbound side. Only the bridge's writer task sends on it."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Recorder(Protocol):
    """What the bridge tells the recording, as it happens (cheap calls, never blocking)."""

    def caller_audio(self, at_sample: int, pcm: NDArray[np.int16]) -> None: ...
    def agent_audio(self, at_sample: int, pcm: NDArray[np.int16]) -> None: ...
    def agent_cleared(self, at_sample: int) -> None: ...
    def transcript(self, side: Any, text: str, at_sample: int) -> None: ...
    def tool_call(
        self,
        call_id: str,
        name: str,
        args: Mapping[str, Any],
        result: Mapping[str, Any],
        ok: bool,
        duration_s: float,
        at_sample: int,
    ) -> None: ...
    def interruption(self, at_sample: int) -> None: ...
    def reconnect(self, at_sample: int, reason: str, kind: str = "resumed") -> None: ...
    def usage(self, mapping: Mapping[str, object]) -> None: ...
    def dtmf(self, digit: str, at_sample: int) -> None: ...
    def note(self, kind: str, detail: str, at_sample: int) -> None: ...


class RecordingOutcome(Protocol):
    @property
    def wav_path(self) -> Path | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def record_path(self) -> Path | None: ...  # the call record, read by post-call analysis


class CallRecording(Recorder, Protocol):
    """A `Recorder` the call assembly owns: it also closes it when the call is over."""

    def advance(self, now_sample: int) -> None: ...
    async def aclose(self, end_reason: str) -> RecordingOutcome: ...


# Makes the recording of one call. Comes in through `Services`, so a test (or a console
# that tees live call events) swaps it without touching a module global.
RecorderFactory = Callable[[CallInfo], CallRecording]


class KeypadInput(Protocol):
    """Keypad digits for the model (app.agents.keypad); sends in its own task."""

    def press(self, digit: str) -> None: ...
    async def aclose(self) -> None: ...


class ActivityInput(Protocol):
    """Marks the caller's speech when Gemini's own detection is off (app.agents.activity)."""

    async def frame(self, loud: bool) -> None: ...
    async def pause(self) -> None: ...


class ToolRunner(Protocol):
    """Runs the model's tool calls as tasks; results come back through `on_result`."""

    def start(self, call_id: str, name: str, args: Mapping[str, Any]) -> None: ...
    def cancel(self, call_ids: tuple[str, ...]) -> None: ...
    async def aclose(self) -> None: ...


class BridgeMetrics(Protocol):
    def caller_to_model(self, seconds: float) -> None: ...
    def model_to_caller(self, seconds: float) -> None: ...
    def interrupted(self, clear_delay_s: float) -> None: ...
    def response_latency(self, seconds: float) -> None: ...
    def reconnected(self, kind: str = "resumed") -> None: ...
    def live_setup(self, seconds: float) -> None: ...  # every connect and reconnect
    def live_tokens_used(self, counts: Mapping[str, object]) -> None: ...
