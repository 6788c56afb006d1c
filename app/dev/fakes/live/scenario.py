"""What the fake Live server says and does: a scenario, loaded from JSON or a dict.

Every field is optional; `Scenario()` is a working default (any key, any model, greeting
on text input, generic replies to caller speech). The format (JSON, snake_case keys):

```json
{
  "api_key": "test-key",              // expected x-goog-api-key; null = accept any
  "models": ["gemini-live-test"],     // allowed models ("models/" prefix optional); [] = any
  "refuse_setup": {"code": 1008, "reason": "..."},   // close every session after setup
  "refuse_setup_after": null,         // N: refuse_setup only from the (N+1)th connection
  "resume_refused": false,            // refuse every sessionResumption handle
  "resume_refusal": {"code": 1008, "reason": "..."},  // ...with this close

  "greeting": {"clip": "greeting"},   // the reply to any text input
  "turns": [                          // replies to the caller's turns, in order
    {"caller_text": "I'd like to book for tomorrow at ten.",   // inputTranscription sent
     "tool_calls": [{"name": "book", "args": {"when": "tomorrow 10:00"},
                     "expect": {"ok": true}}],                 // subset of the response
     "clip": "reply_booking"}          // audio; "text" overrides the outputTranscription
  ],
  "when_exhausted": "default",        // after the last turn: "default" or "cycle"
  "default_reply": {"clip": "reply_generic"},

  "vad": {"rms_threshold": 500, "min_speech_ms": 60, "silence_ms": 500},
  "audio": {"chunk_ms": 40, "speed": 4.0, "bundle": true},
  "barge_in": {"enabled": true, "margin_ms": 300},
  "tool_response_timeout": 10.0,
  "instant": false,                   // benchmark mode, see below
  "continuous": null,                 // {"clip": "reply_generic", "chunk_ms": 20,
                                      //  "lead_ms": 100}: benchmark mode, see below
  "frame_type": "binary",             // server frames: "binary" (as Google) or "text"
  "generate": {"mode": "schema"},     // generateContent: schema|fixed|invalid_json|error
  "faults": {"go_away_after_turns": null, "go_away_time_left": 2.0,
             "close_after_turns": null, "close_mid_reply": false,
             "close_code": 1011, "close_reason": "Internal error encountered.",
             "drop_tcp": false, "stall_after_turns": null, "stall_seconds": 0.0,
             "repeat": false}
}
```

(JSON has no comments; they are here for explanation only.) The fault fields may also sit
at the top level of the scenario, as shorthand.

Semantics:
- Turn counting: a *turn* is one model reply that reached turnComplete on the current
  connection (the greeting counts). Fault `X_after_turns: N` fires once N turns have
  completed on a connection; each fault fires once per server unless `repeat` is true, so
  a reconnecting client does not meet it again.
- `close_after_turns: N` closes with `close_code`/`close_reason` right after turn N (after
  its sessionResumptionUpdate). With `close_mid_reply: true` it instead closes halfway
  through the audio of reply N+1. `drop_tcp: true` aborts the TCP connection instead of a
  close handshake (the client sees 1006).
- `go_away_after_turns: N` sends `goAway{timeLeft}` after turn N and closes
  (`go_away_close_code`) once `go_away_time_left` seconds have passed.
- `stall_after_turns: N` delays the next reply by `stall_seconds` (audio is still read).
- `speed` is how much faster than real time reply audio is sent (the real server sends
  ~4x); 0 sends a reply's audio all at once.
- `raw` (in a reply): server messages sent verbatim when the reply starts (before its
  tool calls and audio): protocol edge cases such as `{"serverContent": {"turnComplete":
  true, "interactionStatus": "IN_PROGRESS"}}`, `voiceActivity`, `error` or unknown keys.
- A tool call with `omit_id: true` is sent without an `id` (as Vertex AI may); its
  response is matched by name.
- `instant: true`: a reply starts as soon as caller speech is detected (no wait for
  silence), audio is sent at once, and barge-in is off. A new reply needs a pause first.
  Meant for latency benchmarks: speech onset to first audio byte.
- `continuous: {...}`: the model talks for the whole session, whatever the caller does.
  From the client's first audio, `clip` is streamed over and over in `chunk_ms` messages
  at real time, `lead_ms` of it ahead (sent at once, so a client playing it out never
  runs dry), one turn per pass of the clip (its transcript and turnComplete ride on the
  last chunk). No turn detection, no barge-in, and text input gets no greeting. Meant
  for CPU benchmarks: audio flowing both ways all the time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.dev.fakes.live.clips import CLIPS, clip_text, is_clip

_FAULT_KEYS = frozenset(
    {
        "go_away_after_turns",
        "go_away_time_left",
        "go_away_close_code",
        "close_after_turns",
        "close_mid_reply",
        "close_code",
        "close_reason",
        "drop_tcp",
        "stall_after_turns",
        "stall_seconds",
        "repeat",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Refusal(_Model):
    """A WebSocket close sent instead of setupComplete."""

    code: int = Field(ge=1000, le=4999)
    reason: str = ""


class ToolCallSpec(_Model):
    """One function call the model makes. `id` defaults to a unique `call-N`."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    #: What the tool response's `response` must contain: a subset, recursive for objects
    #: (checked and recorded in SessionRecord.tool_checks).
    expect: dict[str, Any] | None = None
    #: Wait for this call's response before the reply's audio (False: audio goes on).
    blocking: bool = True
    #: Send the call without an `id` (answered by name).
    omit_id: bool = False


class Reply(_Model):
    """One model turn: optional tool calls, then a clip with its transcript."""

    #: A name from `clips.CLIPS`, a tone ("tone:1000:2.0", "tone:HZ:SECONDS:DBFS"), or None.
    clip: str | None = "reply_generic"
    #: outputTranscription text; defaults to the clip's transcript.
    text: str | None = None
    #: inputTranscription sent when the caller's turn that this reply answers ends.
    caller_text: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    #: Server messages sent verbatim as the reply starts (protocol edge cases).
    raw: tuple[dict[str, Any], ...] = ()

    @field_validator("clip")
    @classmethod
    def _known_clip(cls, v: str | None) -> str | None:
        if v is not None and not is_clip(v):
            raise ValueError(
                f"unknown clip {v!r}; known: {sorted(CLIPS)}, or a tone: tone:HZ:SECONDS[:DBFS]"
            )
        return v

    @property
    def transcript(self) -> str:
        if self.text is not None:
            return self.text
        return clip_text(self.clip) if self.clip else ""


class VadConfig(_Model):
    """Energy turn detection over the caller's audio, in audio time (not wall time)."""

    #: RMS (int16 units) of a 20 ms window above which it counts as speech (~ -36 dBFS).
    rms_threshold: float = Field(default=500.0, gt=0)
    #: Consecutive loud audio needed for speech to start.
    min_speech_ms: int = Field(default=60, ge=20)
    #: Consecutive quiet audio after speech that ends the caller's turn.
    silence_ms: int = Field(default=500, ge=20)


class AudioConfig(_Model):
    chunk_ms: int = Field(default=40, ge=10)
    #: Times faster than real time; 0 = the whole reply at once.
    speed: float = Field(default=4.0, ge=0)
    #: Bundle fields in one serverContent (audio + transcript, last chunk + turnComplete),
    #: as newer models do; False sends each field in its own message.
    bundle: bool = True


class BargeInConfig(_Model):
    enabled: bool = True
    #: Extra time after the reply's audio would have finished playing in real time.
    margin_ms: int = Field(default=300, ge=0)


class ContinuousConfig(_Model):
    """Agent audio streamed at real time for the whole session (see the module doc)."""

    clip: str = "reply_generic"
    chunk_ms: int = Field(default=20, ge=10)
    lead_ms: int = Field(default=100, ge=0)

    @field_validator("clip")
    @classmethod
    def _known_clip(cls, v: str) -> str:
        if not is_clip(v):
            raise ValueError(f"unknown clip {v!r}; known: {sorted(CLIPS)}, or a tone")
        return v


class Faults(_Model):
    go_away_after_turns: int | None = Field(default=None, ge=0)
    go_away_time_left: float = Field(default=2.0, ge=0)
    go_away_close_code: int = 1000
    close_after_turns: int | None = Field(default=None, ge=0)
    close_mid_reply: bool = False
    close_code: int = 1011
    close_reason: str = "Internal error encountered."
    drop_tcp: bool = False
    stall_after_turns: int | None = Field(default=None, ge=0)
    stall_seconds: float = Field(default=0.0, ge=0)
    repeat: bool = False


class GenerateConfig(_Model):
    """How generateContent (post-call analysis) answers.

    "schema": a JSON object made up from the request's responseJsonSchema; "fixed":
    `response` as the answer's JSON text; "invalid_json": text that is not JSON;
    "error": HTTP `status` with Google's error body.
    """

    mode: Literal["schema", "fixed", "invalid_json", "error"] = "schema"
    response: dict[str, Any] = Field(default_factory=dict)
    status: int = Field(default=500, ge=400, le=599)


class Scenario(_Model):
    api_key: str | None = None
    models: tuple[str, ...] = ()
    refuse_setup: Refusal | None = None
    #: Apply `refuse_setup` only to connections after the first N (None: to all).
    refuse_setup_after: int | None = Field(default=None, ge=0)
    resume_refused: bool = False
    #: The close that refuses a handle (default: the fake's BAD_HANDLE, 1008).
    resume_refusal: Refusal | None = None
    greeting: Reply = Reply(clip="greeting")
    turns: tuple[Reply, ...] = ()
    when_exhausted: Literal["default", "cycle"] = "default"
    default_reply: Reply = Reply(clip="reply_generic")
    vad: VadConfig = VadConfig()
    audio: AudioConfig = AudioConfig()
    barge_in: BargeInConfig = BargeInConfig()
    tool_response_timeout: float = Field(default=10.0, gt=0)
    instant: bool = False
    continuous: ContinuousConfig | None = None
    #: WebSocket frame type of server messages; the real server sends binary JSON.
    frame_type: Literal["binary", "text"] = "binary"
    faults: Faults = Faults()
    generate: GenerateConfig = GenerateConfig()

    @model_validator(mode="before")
    @classmethod
    def _hoist_faults(cls, data: Any) -> Any:
        """Accept fault fields at the top level as shorthand for `faults: {...}`."""
        if not isinstance(data, dict) or not _FAULT_KEYS & data.keys():
            return data
        rest = {k: v for k, v in data.items() if k not in _FAULT_KEYS}
        faults = dict(rest.get("faults") or {})
        faults.update({k: v for k, v in data.items() if k in _FAULT_KEYS})
        rest["faults"] = faults
        return rest

    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        return cls.model_validate(data)

    def model_allowed(self, model: str) -> bool:
        """Whether `model` ("models/x", "x" or a Vertex projects/.../models/x) is served;
        an empty list serves any."""
        if not self.models:
            return True
        name = model.split("/models/")[-1] if model.startswith("projects/") else model
        name = name.removeprefix("models/")
        return any(name == m.removeprefix("models/") for m in self.models)

    def reply_for_turn(self, index: int) -> Reply:
        """The reply to the caller's turn number `index` (0-based) in a conversation."""
        if index < len(self.turns):
            return self.turns[index]
        if self.when_exhausted == "cycle" and self.turns:
            return self.turns[index % len(self.turns)]
        return self.default_reply
