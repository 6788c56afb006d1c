"""`{variables}` in prompts and greetings: the built-ins and the setup hook's.

Only `{name}` is replaced (no attribute access or format specs, so a prompt can never
reach into an object); `{{` and `}}` are literal braces; a `{name}` with no value is
left as written, so a typo shows up in the prompt instead of failing the call.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
Scalar = str | int | float | bool | None


def render(template: str, variables: Mapping[str, object]) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        return str(variables[name]) if name in variables else token

    return _PLACEHOLDER.sub(replace, template)


def builtin_variables(
    *,
    call_sid: str,
    from_number: str,
    to_number: str,
    direction: str,
    agent: str,
    timezone: str,
    now: datetime | None = None,
) -> dict[str, Scalar]:
    """What every prompt may use. Local date and time are in the agent's time zone."""
    moment = (now or datetime.now(UTC)).astimezone(zoneinfo.ZoneInfo(timezone))
    return {
        "call_sid": call_sid,
        "caller_number": from_number,
        "called_number": to_number,
        "direction": direction,
        "agent": agent,
        "timezone": timezone,
        "local_date": moment.strftime("%A %d %B %Y"),  # Wednesday 02 December 2026
        "local_time": moment.strftime("%H:%M"),
        "local_datetime": moment.isoformat(timespec="minutes"),
    }


def clean_variables(raw: Mapping[str, object]) -> dict[str, Scalar]:
    """The hook's variables as JSON scalars under identifier names (others raise)."""
    out: dict[str, Scalar] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"variable name {key!r} is not an identifier")
        if not isinstance(value, str | int | float | bool | None):
            raise ValueError(f"variable {key!r} is a {type(value).__name__}, not a scalar")
        out[key] = value
    return out
