"""The bridge's own view of a Live session: events in, a small session interface out.

Nothing here imports google.genai; `app.live.sdk` translates SDK messages into
these events, and tests drive the bridge with any object that satisfies `LiveSession`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.live.options import LiveOptions


# Not frozen, unlike the other events: one is made per 20-40 ms of agent speech, and a
# frozen dataclass's __init__ costs ~3x (object.__setattr__ per field). Nothing mutates one.
@dataclass(slots=True)
class AgentAudio:
    """A chunk of the agent's speech: PCM16LE mono at `rate` Hz."""

    pcm: bytes
    rate: int = 24000


@dataclass(frozen=True, slots=True)
class CallerTranscript:
    text: str


@dataclass(frozen=True, slots=True)
class AgentTranscript:
    text: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The model detected the caller talking over it: stop playback now."""


@dataclass(frozen=True, slots=True)
class GenerationComplete:
    """The model finished generating this turn (its audio may still be playing)."""


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The model's turn is over.

    `in_progress`: the server said `interactionStatus: "IN_PROGRESS"` with it (seen in
    google-genai's fixtures): more output of the same interaction follows, so it is not a
    boundary at which the link may switch connections after goAway.
    """

    in_progress: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCallCancellation:
    call_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResumptionUpdate:
    handle: str | None
    resumable: bool


@dataclass(frozen=True, slots=True)
class GoAway:
    """The server will close this connection in `time_left_s` seconds."""

    time_left_s: float | None


@dataclass(frozen=True, slots=True)
class Usage:
    """`usageMetadata`. Thoughts, tool-use prompts and cached tokens are counted apart,
    so prompt + response need not equal total. Vertex says `candidatesTokenCount` where
    the Gemini API says `responseTokenCount`; both land in `response_tokens`."""

    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0
    cached_tokens: int = 0
    #: Tokens per modality ("AUDIO", "TEXT", ...), from the *TokensDetails lists.
    prompt_by_modality: Mapping[str, int] = field(default_factory=dict)
    response_by_modality: Mapping[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int | dict[str, int]]:
        """For the call record: the original three keys plus the newer ones (the
        per-modality details as nested mappings, which the record flattens)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "response_tokens": self.response_tokens,
            "total_tokens": self.total_tokens,
            "thoughts_tokens": self.thoughts_tokens,
            "tool_use_prompt_tokens": self.tool_use_prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "prompt_tokens_by_modality": dict(self.prompt_by_modality),
            "response_tokens_by_modality": dict(self.response_by_modality),
        }


LiveEvent = (
    AgentAudio
    | CallerTranscript
    | AgentTranscript
    | Interrupted
    | GenerationComplete
    | TurnComplete
    | ToolCall
    | ToolCallCancellation
    | ResumptionUpdate
    | GoAway
    | Usage
)


@dataclass(frozen=True, slots=True)
class ToolResponse:
    """A tool's result on its way back to the model."""

    call_id: str
    name: str
    response: Mapping[str, Any]
    scheduling: str | None = None  # INTERRUPT | WHEN_IDLE | SILENT, non-blocking tools only
    will_continue: bool | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Facts about an open session, for logs and metrics."""

    session_id: str | None = None
    setup_seconds: float = 0.0
    resumed_from: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class LiveObserver(Protocol):
    """What a Live client reports about the wire that is not an event (metrics, in
    production: `app.metrics.Metrics` satisfies this; app.live never imports metrics)."""

    def unknown_message(self, kind: str) -> None:
        """A server message (or top-level field) of a kind neither client knows."""
        ...


class LiveSession(Protocol):
    """One open connection to the Live API."""

    info: SessionInfo

    async def send_audio(self, pcm16k: bytes) -> None: ...

    async def send_audio_stream_end(self) -> None: ...

    async def send_text(self, text: str) -> None: ...

    # Only with automatic activity detection disabled: the caller's turn is marked.
    async def send_activity_start(self) -> None: ...

    async def send_activity_end(self) -> None: ...

    async def send_tool_responses(self, responses: list[ToolResponse]) -> None: ...

    def events(self) -> AsyncIterator[LiveEvent]:
        """Every event until the connection ends; raises `LiveClosedError` when it drops."""
        ...

    async def close(self) -> None: ...


class LiveConnector(Protocol):
    """Opens Live sessions; `resume_handle` continues an earlier conversation.

    `options` carries one call's session fields (its agent's model, voice, prompt, tools
    and Live options); None uses the connector's own. Key, URL, TLS and keepalive are
    always the connector's.

    `history` (only without a handle): the conversation so far as text, for a fresh
    session that replaces one Live refused to resume; the connector adds it to the
    system instruction (`app.live.options.instructions_with`).
    """

    async def connect(
        self,
        *,
        resume_handle: str | None = None,
        options: LiveOptions | None = None,
        history: str | None = None,
    ) -> LiveSession: ...
