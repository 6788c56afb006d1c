"""TwiML the service answers with, built by twilio's own `VoiceResponse`, and a parser for
the one shape the call simulator needs to follow.

Wire facts (docs/protocols.md §1):
- `<Connect><Stream url="wss://...">` opens a bidirectional Media Stream. `wss://` only, and
  the URL takes no query string: per-call values travel as `<Parameter name value>` and come
  back in `start.customParameters`. Each parameter's name+value must stay under 500 chars.
- `<Connect>` blocks until the WebSocket closes; then the next verb runs. We put `<Hangup/>`
  there so a closed stream always ends the call instead of falling off the document.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twilio.twiml.voice_response import VoiceResponse

from telephony.errors import ProtocolError

__all__ = [
    "MAX_PARAMETER_CHARS",
    "StreamInstruction",
    "dial_twiml",
    "parse_stream_twiml",
    "say_and_hangup_twiml",
    "stream_twiml",
]

# Twilio's documented cap on each <Parameter>'s name + value.
MAX_PARAMETER_CHARS = 500


def _check_stream_url(url: str) -> None:
    # Twilio only connects to wss://; ws:// is accepted for loopback simulation
    # (`voicebot demo`, tests), where the simulator plays Twilio's part.
    parts = urlsplit(url)
    loopback = parts.scheme == "ws" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "wss" or loopback) or not parts.netloc:
        raise ValueError("stream URL must be an absolute wss:// URL")
    if parts.query or parts.fragment or "?" in url:
        raise ValueError("stream URL must not carry a query string; use <Parameter>s")


def _check_parameter(name: str, value: str) -> None:
    if not name:
        raise ValueError("stream parameter names must not be empty")
    if len(name) + len(value) >= MAX_PARAMETER_CHARS:
        raise ValueError(
            f"stream parameter {name[:40]!r}: name+value must be under "
            f"{MAX_PARAMETER_CHARS} characters"
        )


def stream_twiml(
    stream_url: str, parameters: Mapping[str, str], status_callback: str | None = None
) -> str:
    """`<Connect><Stream>` to `stream_url` with `parameters`, then `<Hangup/>`."""
    _check_stream_url(stream_url)
    for name, value in parameters.items():
        _check_parameter(name, value)
    response = VoiceResponse()
    connect = response.connect()
    stream = connect.stream(url=stream_url, status_callback=status_callback)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.hangup()
    return str(response)


def say_and_hangup_twiml(text: str) -> str:
    """Speak `text` with Twilio's TTS and end the call (e.g. when the service is full)."""
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response)


def dial_twiml(number: str, announcement: str | None = None) -> str:
    """Optionally announce, then transfer the caller to `number`."""
    if not number:
        raise ValueError("dial number must not be empty")
    response = VoiceResponse()
    if announcement:
        response.say(announcement)
    response.dial(number)
    return str(response)


@dataclass(frozen=True, slots=True)
class StreamInstruction:
    """What a `<Connect><Stream>` tells Twilio to do."""

    url: str
    parameters: dict[str, str] = field(default_factory=dict)
    status_callback: str | None = None


def parse_stream_twiml(xml: str) -> StreamInstruction:
    """Find `<Response><Connect><Stream>` in TwiML, as Twilio would follow it.

    Does not insist on wss://: local tests point the simulator at a plain ws:// server.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ProtocolError(f"TwiML is not well-formed XML ({exc})") from None
    if root.tag != "Response":
        raise ProtocolError(f"TwiML root must be <Response>, not <{root.tag[:40]}>")
    stream = root.find("./Connect/Stream")
    if stream is None:
        raise ProtocolError("TwiML has no <Connect><Stream>")
    url = stream.get("url")
    if not url:
        raise ProtocolError("TwiML <Stream> has no url")
    parameters: dict[str, str] = {}
    for param in stream.findall("./Parameter"):
        name = param.get("name")
        if not name:
            raise ProtocolError("TwiML <Parameter> has no name")
        parameters[name] = param.get("value", "")
    return StreamInstruction(url, parameters, stream.get("statusCallback"))
