"""What both Live adapters share, without importing google.genai.

`app.live.sdk` (the SDK adapter) and `app.live.direct` (the raw WebSocket client)
open sessions with the same `LiveOptions` and read server values the same way.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

INPUT_MIME = "audio/pcm;rate=16000"
_RATE_RE = re.compile(r"rate=(\d+)")
_DURATION_RE = re.compile(r"^\s*([0-9.]+)\s*s?\s*$")


def is_audio_mime(mime_type: str | None) -> bool:
    return mime_type is None or mime_type.startswith("audio/")


# Cached: every audio message of a session carries the same one or two MIME strings.
@functools.lru_cache(maxsize=64)
def rate_of(mime_type: str | None) -> int:
    """The `rate=` of an `audio/pcm;rate=24000` MIME type; 24 kHz (Live output) if absent."""
    match = _RATE_RE.search(mime_type or "")
    return int(match.group(1)) if match else 24000


def parse_duration(value: object) -> float | None:
    """`goAway.timeLeft` is a protobuf Duration: "50s" on the wire, maybe a number."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION_RE.match(value)):
        return float(match.group(1))
    return None


@dataclass(frozen=True)
class ActivityDetection:
    """`realtimeInputConfig.automaticActivityDetection`; None fields are not sent.

    Sensitivities are the Live API's enum names (`START_SENSITIVITY_LOW`, ...).
    """

    disabled: bool | None = None
    start_of_speech_sensitivity: str | None = None
    end_of_speech_sensitivity: str | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None

    def fields(self) -> dict[str, Any]:
        """The set fields, snake_case as google-genai's dump sends them."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class LiveOptions:
    """What a session is opened with: the connection (key, URL, TLS, keepalive) and the
    session fields (model, voice, prompt, tools, Live options), which may differ per call
    (`LiveConnector.connect(options=...)`: one agent's options for this call).

    The optional Live options (None) are sent only when set, so the server's defaults
    apply otherwise.
    """

    api_key: str
    model: str
    voice: str
    instructions: str
    api_version: str = "v1beta"
    base_url: str | None = None
    tool_declarations: Sequence[Mapping[str, Any]] = ()
    ssl_context: ssl.SSLContext | None = None
    ping_interval: float = 30.0
    ping_timeout: float = 60.0
    connect_timeout: float = 10.0
    # Audio-only sessions are cut at 15 min without compression; with a sliding
    # window they are unlimited. Native-audio models have a 128k-token window.
    compression_trigger_tokens: int = 100_000
    compression_target_tokens: int = 50_000
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    # --- optional Live options, each sent only when set ---------------------------
    language: str | None = None  # BCP-47: generationConfig.speechConfig.languageCode
    activity_detection: ActivityDetection | None = None  # realtimeInputConfig
    affective_dialog: bool | None = None  # generationConfig.enableAffectiveDialog
    proactive_audio: bool | None = None  # proactivity.proactiveAudio
    thinking_budget: int | None = None  # generationConfig.thinkingConfig.thinkingBudget
