"""What the fake server observed, for tests to assert on, and the conversation state.

A `SessionRecord` is one WebSocket connection. A `Conversation` outlives connections: a
client that presents a resumption handle continues the conversation the handle points at,
and its record says so (`resumed_from`, same `conversation_id`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class AudioFrame:
    """One realtime audio chunk as received: when (monotonic seconds), how long, what rate."""

    received_at: float
    samples: int
    rate: int


@dataclass(frozen=True)
class ToolCheck:
    """The response to one scripted tool call, against its `expect` (if any)."""

    id: str
    name: str
    expected: dict[str, Any] | None
    response: dict[str, Any] | None  # None: no response (timed out or cancelled)
    passed: bool
    outcome: str  # "answered" | "timeout" | "cancelled"


@dataclass
class TranscriptLine:
    role: str  # "caller" | "model"
    text: str
    interrupted: bool = False


@dataclass
class Conversation:
    """State that a resumption handle carries from one connection to the next."""

    id: str
    next_turn: int = 0
    transcript: list[TranscriptLine] = field(default_factory=list)

    def snapshot(self) -> Conversation:
        lines = [TranscriptLine(t.role, t.text, t.interrupted) for t in self.transcript]
        return Conversation(self.id, self.next_turn, lines)


@dataclass
class SessionRecord:
    """Everything one connection did. Never holds the API key itself."""

    index: int
    path: str
    api_version: str | None
    api_key_present: bool
    #: Whether the key matched the scenario's (True when the scenario accepts any key).
    api_key_valid: bool
    #: Vertex AI path (Bearer token, projects/... model) rather than the Gemini API's.
    vertex: bool = False
    #: A fingerprint (sha256, 12 hex) of the Bearer token presented, never the token.
    bearer_fingerprint: str | None = None
    #: The handshake's header names, lower-cased (values are never kept).
    header_names: frozenset[str] = frozenset()
    started_at: float = field(default_factory=time.monotonic)
    setup: dict[str, Any] | None = None
    model: str | None = None
    session_id: str | None = None
    conversation_id: str | None = None
    #: The sessionResumption handle presented in setup, if any.
    resumption_handle: str | None = None
    #: True when that handle was accepted and this connection continues its conversation.
    resumed: bool = False
    audio: bytearray = field(default_factory=bytearray)
    audio_frames: list[AudioFrame] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    client_contents: list[dict[str, Any]] = field(default_factory=list)
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    tool_checks: list[ToolCheck] = field(default_factory=list)
    #: Client signals: (monotonic time, "activity_start" | "activity_end" | "audio_stream_end").
    signals: list[tuple[float, str]] = field(default_factory=list)
    #: What the server did: (monotonic time, event), e.g. "setup_complete", "turn_complete".
    events: list[tuple[float, str]] = field(default_factory=list)
    handles_sent: list[str] = field(default_factory=list)
    turns_completed: int = 0
    interruptions: int = 0
    #: How it ended: "client_closed", "server_closed", "refused", "go_away", "dropped",
    #: "server_stopped", "server_error" or "protocol_error"; None while open.
    ended: str | None = None
    close_code: int | None = None
    close_reason: str | None = None
    ended_at: float | None = None
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def audio_bytes(self) -> bytes:
        """Caller audio received, PCM16LE concatenated (16 kHz from google-genai)."""
        return bytes(self.audio)

    def audio_array(self) -> npt.NDArray[np.int16]:
        return np.frombuffer(bytes(self.audio), dtype="<i2").astype(np.int16)

    def event_names(self) -> list[str]:
        return [name for _, name in self.events]

    def log(self, event: str) -> None:
        self.events.append((time.monotonic(), event))

    def finish(self, ended: str, code: int | None = None, reason: str | None = None) -> None:
        """Record the end once; later calls keep the first cause."""
        if self.ended is None:
            self.ended, self.close_code, self.close_reason = ended, code, reason
            self.ended_at = time.monotonic()
        self._done.set()

    async def wait_closed(self) -> None:
        """Wait for the connection to end (wrap in `asyncio.timeout`)."""
        await self._done.wait()
