"""The service's error tree. Pure protocol errors live in `telephony.errors`.

VoicebotError
├── ConfigError          invalid settings; raised at start, names the variable
├── SignatureError       a Twilio request whose signature or stream token is bad
├── LiveError            the Gemini Live session failed
│   ├── LiveSetupError   refused before setupComplete (bad key, bad model, unreachable)
│   └── LiveClosedError  the session ended mid-call (after retries, if any)
├── StateStoreError      the tool state store failed (Redis unreachable, ...)
└── RecordingError       recordings cannot be written at all (RECORDINGS_DIR unusable at
                         start); one call's disk failure is not raised: the call goes on
                         and its record says `recording.status: failed`
    └── CallStoreError   the shared call store (object storage) could not be read
"""

from __future__ import annotations


class VoicebotError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(VoicebotError):
    """Settings are invalid; the message names the variable."""


class SignatureError(VoicebotError):
    """A request did not prove it came from Twilio."""


class LiveError(VoicebotError):
    """The Gemini Live session failed."""


class LiveSetupError(LiveError):
    """Live refused or could not complete setup (key, model, network).

    `code`/`reason` are the WebSocket close the server sent instead of setupComplete
    (None/"" when it never got that far: unreachable, TLS, timeout); the Live link
    classifies them (`app.live.refusals`) to decide between retrying, a fresh session
    and giving up.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class LiveClosedError(LiveError):
    """The Live session closed mid-call and could not be resumed."""


class StateStoreError(VoicebotError):
    """The per-call tool state store failed."""


class RecordingError(VoicebotError):
    """Recordings cannot be written at all (raised at start; names RECORDINGS_DIR)."""


class CallStoreError(RecordingError):
    """Object storage holding finished calls did not answer or refused a read."""
