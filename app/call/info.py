"""What one call is and how it went: its identity, its bridge settings, why it ended, its
counters."""

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
    # Twilio's Direction ("inbound", "outbound-api"), or "web": a console call from a
    # browser, with no Twilio call behind it to hang up or redirect (app/console/webcall.py).
    direction: str = "inbound"


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


@dataclass
class BridgeConfig:
    greeting: str | None = None
    max_lead_seconds: float = 0.2
    hangup_fallback_seconds: float = 10.0
    # After end_call, how long to wait for the model to start its goodbye.
    goodbye_grace_seconds: float = 1.5
    max_reconnects: int = 3
    input_pause_seconds: float = 1.0


def first_reason(group: BaseExceptionGroup[CallEnded]) -> EndReason:
    """The reason of the first `CallEnded` in a task group's exceptions."""
    for exc in group.exceptions:
        if isinstance(exc, CallEnded):
            return exc.reason
        if isinstance(exc, BaseExceptionGroup):
            return first_reason(exc)
    return EndReason.ERROR
