"""What one call is and how it went: its identity, why it ended, and its counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class EndReason(StrEnum):
    CALLER_HANGUP = "caller_hangup"
    AGENT_HANGUP = "agent_hangup"
    TRANSFERRED = "transferred"
    LIVE_FAILED = "live_failed"
    SHUTDOWN = "server_shutdown"
    ERROR = "error"


class CallEnded(Exception):
    """Raised by whichever of the bridge's tasks ends the call; the group cancels the rest."""

    def __init__(self, reason: EndReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Who is calling whom: what a transport (Twilio's start message, a web call) knows."""

    call_sid: str
    stream_sid: str
    account_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class CallStats:
    """One call's counters, logged with `call.ended`. Slots: `frames_in` moves every 20 ms."""

    frames_in: int = 0
    frames_out: int = 0
    interruptions: int = 0
    reconnects: int = 0
    first_agent_audio_s: float | None = None  # stream start -> first agent audio queued

    def as_log_fields(self) -> dict[str, int | float | None]:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "interruptions": self.interruptions,
            "reconnects": self.reconnects,
            "first_agent_audio_s": self.first_agent_audio_s,
        }
