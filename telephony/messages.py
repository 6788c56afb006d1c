"""Twilio Media Streams messages: typed, frozen, parsed and built without I/O.

Wire facts (docs/protocols.md §3):
- Frames are JSON text. Twilio -> server numbers arrive as *strings*
  (`sequenceNumber`, `chunk`, `timestamp`) except `sampleRate`/`channels`; we accept ints too.
- `connected` carries no sequenceNumber; every later event counts up from 1.
- Media payloads are base64 mu-law, 8 kHz mono, no header; 20 ms = 160 bytes inbound.
- Server -> Twilio: `media` (any size, buffered and played in order), `mark` (echoed once all
  audio queued before it has played), `clear` (drops the buffer, echoes pending marks).

Both directions are here: the service parses Twilio's events and builds its own; the call
simulator does the reverse.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

import orjson

from telephony.errors import ProtocolError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "OutboundClear",
    "OutboundMark",
    "OutboundMedia",
    "OutboundMessage",
    "Start",
    "Stop",
    "TwilioMessage",
    "UnknownEventError",
    "clear_message",
    "connected_message",
    "dtmf_message",
    "inbound_media_message",
    "mark_echo_message",
    "mark_message",
    "media_message",
    "parse_message",
    "parse_outbound",
    "start_message",
    "stop_message",
]

# A 20 ms inbound frame is ~400 bytes of JSON; a `start` with many <Parameter>s (each
# name+value < 500 chars) stays well under this. Outbound media may be larger chunks, so the
# simulator's parser uses the same generous cap.
MAX_MESSAGE_BYTES = 64 * 1024

# The only format `<Connect><Stream>` delivers on a phone call.
MULAW_ENCODING = "audio/x-mulaw"
MULAW_RATE = 8000
MULAW_CHANNELS = 1

# Sequence numbers, chunks and ms timestamps never need more digits than this; the cap keeps
# int() away from pathological input.
_MAX_DIGITS = 18


class UnknownEventError(ProtocolError):
    """Well-formed JSON with an `event` this code does not know.

    A subclass so a caller may choose to skip events Twilio adds in the future while still
    treating malformed frames as fatal.
    """


# --- Twilio -> server -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    sequence_number: int
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str]  # read-only view; values from <Parameter>
    encoding: str
    sample_rate: int
    channels: int


# Not frozen, unlike its siblings: 50 are made a second per call, and a frozen dataclass's
# __init__ sets each field through object.__setattr__ (4x the cost). Nothing mutates one.
@dataclass(slots=True)
class Media:
    sequence_number: int
    stream_sid: str
    track: str
    chunk: int  # counts from 1
    timestamp: int  # ms since the stream started
    payload: bytes  # decoded mu-law


@dataclass(frozen=True, slots=True)
class Dtmf:
    sequence_number: int
    stream_sid: str
    track: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    sequence_number: int
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    sequence_number: int
    stream_sid: str
    account_sid: str
    call_sid: str


TwilioMessage: TypeAlias = Connected | Start | Media | Dtmf | Mark | Stop


# --- server -> Twilio (parsed by the simulator) ------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    stream_sid: str
    payload: bytes  # decoded mu-law


@dataclass(frozen=True, slots=True)
class OutboundMark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class OutboundClear:
    stream_sid: str


OutboundMessage: TypeAlias = OutboundMedia | OutboundMark | OutboundClear


# --- field readers: each names the path that is wrong, never echoes the input -------------


def _decode(raw: str | bytes) -> dict[str, Any]:
    if not isinstance(raw, str | bytes | bytearray | memoryview):
        raise ProtocolError(f"message must be str or bytes, not {type(raw).__name__}")
    # len() of a str counts characters; UTF-8 is at most 4 bytes each, so this bounds both.
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message too large: {len(raw)} > {MAX_MESSAGE_BYTES}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"message is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"message must be a JSON object, not {type(data).__name__}")
    return data


def _field(obj: Mapping[str, Any], key: str, path: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise ProtocolError(f"missing field {path}{key}") from None


def _obj(obj: Mapping[str, Any], key: str, path: str = "") -> dict[str, Any]:
    value = _field(obj, key, path)
    if not isinstance(value, dict):
        raise ProtocolError(f"field {path}{key} must be an object")
    return value


def _str(obj: Mapping[str, Any], key: str, path: str = "") -> str:
    value = _field(obj, key, path)
    if not isinstance(value, str):
        raise ProtocolError(f"field {path}{key} must be a string")
    return value


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _int(obj: Mapping[str, Any], key: str, path: str = "") -> int:
    """A non-negative integer sent as a decimal string (Twilio's habit) or a JSON int."""
    value = _field(obj, key, path)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    # isascii() too: str.isdigit() accepts e.g. Arabic-Indic digits that int() would parse.
    if isinstance(value, str) and 0 < len(value) <= _MAX_DIGITS and _is_ascii_digits(value):
        return int(value)
    raise ProtocolError(f"field {path}{key} must be a non-negative integer")


def _b64(obj: Mapping[str, Any], key: str, path: str = "") -> bytes:
    text = _str(obj, key, path)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"field {path}{key} is not valid base64") from None


def _str_map(obj: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, str]:
    value = obj.get(key, {})  # tolerated when absent: a <Stream> without <Parameter>s
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ProtocolError(f"field {path}{key} must be an object of strings")
    return MappingProxyType(dict(value))


def _str_tuple(obj: Mapping[str, Any], key: str, path: str = "") -> tuple[str, ...]:
    value = _field(obj, key, path)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"field {path}{key} must be a list of strings")
    return tuple(value)


def _event(data: Mapping[str, Any]) -> str:
    return _str(data, "event")


# --- Twilio -> server parsing ---------------------------------------------------------


def _parse_connected(data: dict[str, Any]) -> Connected:
    return Connected(protocol=_str(data, "protocol"), version=_str(data, "version"))


def _parse_start(data: dict[str, Any]) -> Start:
    stream_sid = _str(data, "streamSid")
    start = _obj(data, "start")
    # Twilio repeats the sid inside `start`; a mismatch means a confused peer.
    if start.get("streamSid", stream_sid) != stream_sid:
        raise ProtocolError("field start.streamSid differs from streamSid")
    fmt = _obj(start, "mediaFormat", "start.")
    encoding = _str(fmt, "encoding", "start.mediaFormat.")
    sample_rate = _int(fmt, "sampleRate", "start.mediaFormat.")
    channels = _int(fmt, "channels", "start.mediaFormat.")
    if (encoding, sample_rate, channels) != (MULAW_ENCODING, MULAW_RATE, MULAW_CHANNELS):
        raise ProtocolError(
            f"unsupported media format {encoding[:40]!r} {sample_rate} Hz x{channels}; "
            f"expected {MULAW_ENCODING} {MULAW_RATE} Hz mono"
        )
    return Start(
        sequence_number=_int(data, "sequenceNumber"),
        stream_sid=stream_sid,
        call_sid=_str(start, "callSid", "start."),
        account_sid=_str(start, "accountSid", "start."),
        tracks=_str_tuple(start, "tracks", "start."),
        custom_parameters=_str_map(start, "customParameters", "start."),
        encoding=encoding,
        sample_rate=sample_rate,
        channels=channels,
    )


def _parse_media(data: dict[str, Any]) -> Media:
    # Hot path (50 frames a second per call): Twilio's own shape, every number a decimal
    # string, checked in one pass. Anything else takes the field-by-field path below,
    # which accepts the same messages and names what is wrong.
    media = data.get("media")
    if type(media) is dict:
        seq, sid = data.get("sequenceNumber"), data.get("streamSid")
        track, chunk, timestamp = media.get("track"), media.get("chunk"), media.get("timestamp")
        payload = media.get("payload")
        if (
            type(sid) is str
            and type(track) is str
            and type(payload) is str
            and type(seq) is str
            and type(chunk) is str
            and type(timestamp) is str
            # Decimal strings of sane length, checked in two calls for all three.
            and 0 < len(seq) <= _MAX_DIGITS
            and 0 < len(chunk) <= _MAX_DIGITS
            and 0 < len(timestamp) <= _MAX_DIGITS
            and (seq + chunk + timestamp).isdigit()
            and (seq + chunk + timestamp + payload).isascii()
        ):
            try:
                audio = binascii.a2b_base64(payload, strict_mode=True)
            except binascii.Error:
                pass  # the checked path reports it
            else:
                return Media(int(seq), sid, track, int(chunk), int(timestamp), audio)
    return _parse_media_checked(data)


def _parse_media_checked(data: dict[str, Any]) -> Media:
    media = _obj(data, "media")
    return Media(
        sequence_number=_int(data, "sequenceNumber"),
        stream_sid=_str(data, "streamSid"),
        track=_str(media, "track", "media."),
        chunk=_int(media, "chunk", "media."),
        timestamp=_int(media, "timestamp", "media."),
        payload=_b64(media, "payload", "media."),
    )


def _parse_dtmf(data: dict[str, Any]) -> Dtmf:
    dtmf = _obj(data, "dtmf")
    return Dtmf(
        sequence_number=_int(data, "sequenceNumber"),
        stream_sid=_str(data, "streamSid"),
        track=_str(dtmf, "track", "dtmf."),
        digit=_str(dtmf, "digit", "dtmf."),
    )


def _parse_mark(data: dict[str, Any]) -> Mark:
    return Mark(
        sequence_number=_int(data, "sequenceNumber"),
        stream_sid=_str(data, "streamSid"),
        name=_str(_obj(data, "mark"), "name", "mark."),
    )


def _parse_stop(data: dict[str, Any]) -> Stop:
    stop = _obj(data, "stop")
    return Stop(
        sequence_number=_int(data, "sequenceNumber"),
        stream_sid=_str(data, "streamSid"),
        account_sid=_str(stop, "accountSid", "stop."),
        call_sid=_str(stop, "callSid", "stop."),
    )


_INBOUND: dict[str, Callable[[dict[str, Any]], TwilioMessage]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


def _dispatch(data: dict[str, Any], table: Mapping[str, Callable[[dict[str, Any]], Any]]) -> Any:
    event = _event(data)
    parser = table.get(event)
    if parser is None:
        raise UnknownEventError(f"unknown event {event[:40]!r}")
    return parser(data)


def parse_message(raw: str | bytes) -> TwilioMessage:
    """Parse one Twilio -> server frame; anything malformed raises `ProtocolError`."""
    data = _decode(raw)
    if data.get("event") == "media":  # nearly every frame: straight to its parser
        return _parse_media(data)
    result: TwilioMessage = _dispatch(data, _INBOUND)
    return result


# --- server -> Twilio parsing (for the simulator) -------------------------------------


def _parse_out_media(data: dict[str, Any]) -> OutboundMedia:
    media = _obj(data, "media")
    return OutboundMedia(
        stream_sid=_str(data, "streamSid"), payload=_b64(media, "payload", "media.")
    )


def _parse_out_mark(data: dict[str, Any]) -> OutboundMark:
    return OutboundMark(
        stream_sid=_str(data, "streamSid"), name=_str(_obj(data, "mark"), "name", "mark.")
    )


def _parse_out_clear(data: dict[str, Any]) -> OutboundClear:
    return OutboundClear(stream_sid=_str(data, "streamSid"))


_OUTBOUND: dict[str, Callable[[dict[str, Any]], OutboundMessage]] = {
    "media": _parse_out_media,
    "mark": _parse_out_mark,
    "clear": _parse_out_clear,
}


def parse_outbound(raw: str | bytes) -> OutboundMessage:
    """Parse one server -> Twilio frame, as Twilio would; malformed raises `ProtocolError`."""
    result: OutboundMessage = _dispatch(_decode(raw), _OUTBOUND)
    return result


# --- builders ---------------------------------------------------------------------------
# orjson.dumps keeps dict insertion order, so the keys come out in Twilio's documented order.


def _dump(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


def media_message(stream_sid: str, payload: bytes) -> str:
    """Server -> Twilio audio (mu-law 8 kHz mono). Hot path: one call per 20 ms frame."""
    b64 = binascii.b2a_base64(payload, newline=False).decode("ascii")
    return _dump({"event": "media", "streamSid": stream_sid, "media": {"payload": b64}})


def mark_message(stream_sid: str, name: str) -> str:
    return _dump({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return _dump({"event": "clear", "streamSid": stream_sid})


# Twilio-side builders (the simulator plays Twilio). Numbers are strings, as Twilio sends them.


def connected_message() -> str:
    return _dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    custom_parameters: Mapping[str, str],
    sequence_number: int = 1,
) -> str:
    return _dump(
        {
            "event": "start",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {
                    "encoding": MULAW_ENCODING,
                    "sampleRate": MULAW_RATE,
                    "channels": MULAW_CHANNELS,
                },
                "customParameters": dict(custom_parameters),
            },
        }
    )


def inbound_media_message(
    stream_sid: str, sequence_number: int, chunk: int, timestamp_ms: int, payload: bytes
) -> str:
    return _dump(
        {
            "event": "media",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode("ascii"),
            },
        }
    )


def mark_echo_message(stream_sid: str, sequence_number: int, name: str) -> str:
    return _dump(
        {
            "event": "mark",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def dtmf_message(stream_sid: str, sequence_number: int, digit: str) -> str:
    # Twilio names the DTMF track "inbound_track", unlike media's "inbound".
    return _dump(
        {
            "event": "dtmf",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def stop_message(stream_sid: str, sequence_number: int, account_sid: str, call_sid: str) -> str:
    return _dump(
        {
            "event": "stop",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        }
    )
