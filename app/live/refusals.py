"""What a failed Live setup means for the call: pure policy, no I/O.

Live refuses a setup by closing the WebSocket before setupComplete. The close code and
reason say whether trying again can help (reasons as seen in public reports of
google-genai users; Google documents none of them):

- 1007 "API key not valid. Please pass a valid API key." / "API key expired...", 1008
  "Method doesn't allow unregistered callers...", 1008 "models/X is not found for API
  version v1beta, or is not supported for bidiGenerateContent": configuration. No retry
  fixes them: FATAL, fail at once.
- 1007 "Request contains an invalid argument." / 1008 "Requested entity was not found" /
  "...handle is invalid or has expired" while resuming: the resumption handle is what Live
  will not take (expired, unknown, or refused after a long compressed session):
  HANDLE_REFUSED, go on in a fresh session with the conversation as context. Without a
  handle the same codes mean our setup itself is wrong: FATAL.
- 1011 "Internal error occurred." / "The service is currently unavailable." / "Deadline
  expired...", 1001/1006/1013, timeouts, unreachable, TLS: TRANSIENT, retry with backoff.
"""

from __future__ import annotations

import enum
import re


class Refusal(enum.Enum):
    FATAL = "fatal"
    HANDLE_REFUSED = "handle_refused"
    TRANSIENT = "transient"


# Reasons that name a configuration problem, whatever the code.
_CONFIG_REASONS = re.compile(
    r"api key (not valid|expired|invalid)|unregistered callers|permission denied"
    r"|is not found for api version|not supported for bidigeneratecontent"
    r"|billing|has not been used in project|is disabled",
    re.IGNORECASE,
)
# Close codes that say "this request is wrong" rather than "try later".
_REQUEST_CODES = frozenset({1007, 1008})


def classify(code: int | None, reason: str, *, resuming: bool) -> Refusal:
    """Whether a setup that failed with close `code`/`reason` is worth retrying.

    `code` is None when no close came (unreachable, TLS, timeout): transient.
    """
    if code is not None and _CONFIG_REASONS.search(reason or ""):
        return Refusal.FATAL
    if code in _REQUEST_CODES:
        return Refusal.HANDLE_REFUSED if resuming else Refusal.FATAL
    return Refusal.TRANSIENT
