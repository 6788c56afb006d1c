"""What the simulated Twilio caller is asked to do (`CallOptions`) and what it observed
(`CallReport`): plain data shared by the caller's driver, the demo, simulate and bench."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

EventCallback = Callable[[str, Mapping[str, Any]], None]
EndedBy = Literal["server_closed", "caller_hangup", "error"]


def new_sid(prefix: str) -> str:
    """A random Twilio-style sid (CA..., MZ...)."""
    return prefix + secrets.token_hex(16)


# --- options and report --------------------------------------------------------------


@dataclass(slots=True)
class CallOptions:
    base_url: str  # http(s)://host:port of the service
    audio: NDArray[np.int16]  # caller speech, 8 kHz mono
    auth_token: str | None = None  # sign webhook and upgrade when set
    follow_up: NDArray[np.int16] | None = None  # said once the agent finished its reply
    from_number: str = "+15005550006"
    to_number: str = "+15005550001"
    call_sid: str = field(default_factory=lambda: new_sid("CA"))
    account_sid: str = "AC" + "0" * 32
    # Quiet after the caller's last audio before hanging up. While waiting to say the
    # follow-up, the agent's speech also counts, so a long reply is not cut off.
    listen_seconds: float = 8.0
    max_seconds: float = 120.0  # hard cap on stream time
    ssl_context: ssl.SSLContext | None = None
    on_event: EventCallback | None = None
    silence_rms: float = 200.0  # frame RMS (int16 scale) above which audio counts as speech
    reply_gap_seconds: float = 1.0  # quiet after agent speech that ends its reply
    underrun_window_seconds: float = 0.5  # a playback gap shorter than this is an underrun
    # Up to this long, wait for the agent's greeting to finish before speaking (a caller
    # listens first); 0 speaks at once.
    wait_for_greeting_seconds: float = 0.0
    # Keys pressed: (seconds of stream time, digit), sent as Twilio `dtmf` events.
    dtmf: tuple[tuple[float, str], ...] = ()
    # Query parameters on the voice webhook URL (signed with it), e.g. {"agent": "sales"}.
    webhook_query: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # keep the auth token out of logs and tracebacks
        token = "set" if self.auth_token else None
        return f"CallOptions(base_url={self.base_url!r}, call_sid={self.call_sid!r}, token={token})"


@dataclass(frozen=True, slots=True)
class MarkRecord:
    name: str
    played: bool  # False: echoed by a clear, its audio was discarded
    at_ms: float  # stream time of the echo


@dataclass(slots=True)
class CallReport:
    """What happened on one call. Times are ms of stream time since `start` (tick k = 20k);
    `heard` and `sent` are 8 kHz int16 on that same clock, one sample per real-time sample."""

    call_sid: str
    ended_by: EndedBy
    error: str | None = None
    stream_sid: str | None = None
    stream_url: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    duration_ms: float = 0.0
    utterance_ends_ms: list[float] = field(default_factory=list)
    first_audio_ms: float | None = None  # stream start -> first agent speech heard
    response_latencies_ms: list[float | None] = field(default_factory=list)  # per utterance
    clears: int = 0
    clear_times_ms: list[float] = field(default_factory=list)
    marks: list[MarkRecord] = field(default_factory=list)
    frames_received: int = 0  # 20 ms of audio each, whatever size the messages were
    media_messages: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    underruns: int = 0
    underrun_ms: float = 0.0
    close_code: int | None = None
    heard: NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, np.int16))
    sent: NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, np.int16))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the audio arrays are left out)."""
        result: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in ("heard", "sent"):
                continue
            value = getattr(self, name)
            if name == "marks":
                value = [{"name": m.name, "played": m.played, "at_ms": m.at_ms} for m in value]
            elif isinstance(value, list | dict):
                value = value.copy()
            result[name] = value
        result["heard_seconds"] = self.heard.size / 8000
        return result
