"""Media Streams messages: the exact shapes of docs/protocols.md §3, in and out."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.errors import ProtocolError
from telephony.messages import (
    MAX_MESSAGE_BYTES,
    Connected,
    Dtmf,
    Mark,
    Media,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
    UnknownEventError,
    clear_message,
    connected_message,
    dtmf_message,
    inbound_media_message,
    mark_echo_message,
    mark_message,
    media_message,
    parse_message,
    parse_outbound,
    start_message,
    stop_message,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA00000000000000000000000000000001"
ACCT = "AC00000000000000000000000000000002"
FRAME = bytes(range(160))
FRAME_B64 = base64.b64encode(FRAME).decode()

# Verbatim from protocols.md §3; only the elided sids and payload are filled in below.
_DOC = {
    "connected": '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    "start": '{"event":"start","sequenceNumber":"1","streamSid":"MZ...","start":{"accountSid":"AC...","streamSid":"MZ...","callSid":"CA...","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"k":"v"}}}',  # noqa: E501
    "media": '{"event":"media","sequenceNumber":"4","streamSid":"MZ...","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"<base64 mu-law>"}}',  # noqa: E501
    "dtmf": '{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ...","dtmf":{"track":"inbound_track","digit":"1"}}',  # noqa: E501
    "mark": '{"event":"mark","sequenceNumber":"6","streamSid":"MZ...","mark":{"name":"label"}}',
    "stop": '{"event":"stop","sequenceNumber":"7","streamSid":"MZ...","stop":{"accountSid":"AC...","callSid":"CA..."}}',  # noqa: E501
}


def _fill(doc: str) -> str:
    return (
        doc.replace("MZ...", SID)
        .replace("AC...", ACCT)
        .replace("CA...", CALL)
        .replace("<base64 mu-law>", FRAME_B64)
    )


CONNECTED, START, MEDIA, DTMF, MARK, STOP = (_fill(_DOC[k]) for k in _DOC)


def test_parse_connected() -> None:
    assert parse_message(CONNECTED) == Connected(protocol="Call", version="1.0.0")


def test_parse_start() -> None:
    msg = parse_message(START)
    assert isinstance(msg, Start)
    assert (msg.sequence_number, msg.stream_sid, msg.call_sid, msg.account_sid) == (
        1,
        SID,
        CALL,
        ACCT,
    )
    assert msg.tracks == ("inbound",)
    assert dict(msg.custom_parameters) == {"k": "v"}
    assert (msg.encoding, msg.sample_rate, msg.channels) == ("audio/x-mulaw", 8000, 1)


def test_start_custom_parameters_are_read_only() -> None:
    msg = parse_message(START)
    assert isinstance(msg, Start)
    with pytest.raises(TypeError):
        msg.custom_parameters["k"] = "x"  # type: ignore[index]


def test_start_without_custom_parameters_is_empty() -> None:
    data = orjson.loads(START)
    del data["start"]["customParameters"]
    msg = parse_message(orjson.dumps(data))
    assert isinstance(msg, Start)
    assert dict(msg.custom_parameters) == {}


def test_parse_media_decodes_payload() -> None:
    assert parse_message(MEDIA) == Media(
        sequence_number=4, stream_sid=SID, track="inbound", chunk=2, timestamp=5, payload=FRAME
    )


def test_parse_dtmf_mark_stop() -> None:
    assert parse_message(DTMF) == Dtmf(5, SID, "inbound_track", "1")
    assert parse_message(MARK) == Mark(6, SID, "label")
    assert parse_message(STOP) == Stop(7, SID, ACCT, CALL)


def test_parse_accepts_bytes_and_int_numbers() -> None:
    data = orjson.loads(MEDIA)
    data["sequenceNumber"] = 4
    data["media"]["chunk"] = 2
    data["media"]["timestamp"] = 5
    assert parse_message(orjson.dumps(data)) == parse_message(MEDIA)


def test_messages_are_frozen() -> None:
    msg = parse_message(MARK)
    assert isinstance(msg, Mark)
    with pytest.raises(AttributeError):
        msg.name = "other"  # type: ignore[misc]


def _mutated(base: str, path: tuple[str, ...], value: Any) -> str:
    data = orjson.loads(base)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return orjson.dumps(data).decode()


_DELETE = object()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ('{"event":"\ud800"}', "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"media"', "JSON object"),
        ("{}", "missing field event"),
        ('{"event": 3}', "field event must be a string"),
        ('{"event": "dance"}', "unknown event 'dance'"),
        (_mutated(MEDIA, ("media",), _DELETE), "missing field media"),
        (_mutated(MEDIA, ("media",), "x"), "field media must be an object"),
        (_mutated(MEDIA, ("media", "payload"), _DELETE), "missing field media.payload"),
        (_mutated(MEDIA, ("media", "payload"), "!!!"), "media.payload is not valid base64"),
        (_mutated(MEDIA, ("media", "payload"), "abc"), "media.payload is not valid base64"),
        (_mutated(MEDIA, ("media", "payload"), 12), "media.payload must be a string"),
        (_mutated(MEDIA, ("media", "chunk"), "-1"), "media.chunk must be a non-negative"),
        (_mutated(MEDIA, ("media", "chunk"), "1.5"), "media.chunk must be a non-negative"),
        (_mutated(MEDIA, ("media", "chunk"), "٣"), "media.chunk must be a non-negative"),
        (_mutated(MEDIA, ("media", "chunk"), True), "media.chunk must be a non-negative"),
        (_mutated(MEDIA, ("media", "timestamp"), "9" * 40), "media.timestamp"),
        (_mutated(MEDIA, ("sequenceNumber",), None), "sequenceNumber"),
        (_mutated(MEDIA, ("streamSid",), _DELETE), "missing field streamSid"),
        (_mutated(START, ("start", "mediaFormat", "encoding"), "audio/l16"), "unsupported media"),
        (_mutated(START, ("start", "mediaFormat", "sampleRate"), 16000), "16000 Hz"),
        (_mutated(START, ("start", "mediaFormat", "channels"), 2), "x2"),
        (_mutated(START, ("start", "mediaFormat"), _DELETE), "start.mediaFormat"),
        (_mutated(START, ("start", "streamSid"), "MZother"), "start.streamSid differs"),
        (_mutated(START, ("start", "tracks"), "inbound"), "start.tracks must be a list"),
        (_mutated(START, ("start", "customParameters"), {"k": 1}), "customParameters"),
        (_mutated(START, ("start", "callSid"), _DELETE), "missing field start.callSid"),
        (_mutated(DTMF, ("dtmf", "digit"), _DELETE), "missing field dtmf.digit"),
        (_mutated(MARK, ("mark", "name"), []), "mark.name must be a string"),
        (_mutated(STOP, ("stop",), _DELETE), "missing field stop"),
        (_mutated(CONNECTED, ("version",), _DELETE), "missing field version"),
    ],
)
def test_malformed_messages_raise_protocol_error(raw: str | bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle.replace(".", r"\.")):
        parse_message(raw)


def test_unknown_event_has_its_own_subclass() -> None:
    with pytest.raises(UnknownEventError):
        parse_message('{"event":"transcription"}')


def test_oversized_message_is_rejected_without_echoing_it() -> None:
    raw = '{"event":"media","junk":"' + "A" * MAX_MESSAGE_BYTES + '"}'
    with pytest.raises(ProtocolError, match="too large") as info:
        parse_message(raw)
    assert len(str(info.value)) < 200


def test_error_messages_do_not_echo_long_values() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_message('{"event":"' + "x" * 5000 + '"}')
    assert len(str(info.value)) < 200


# --- round trips ----------------------------------------------------------------------


def test_twilio_side_builders_round_trip() -> None:
    assert parse_message(connected_message()) == Connected("Call", "1.0.0")
    start = parse_message(start_message(SID, CALL, ACCT, {"a": "1", "b": "2"}, 1))
    assert isinstance(start, Start)
    assert (start.stream_sid, start.call_sid, start.account_sid) == (SID, CALL, ACCT)
    assert dict(start.custom_parameters) == {"a": "1", "b": "2"}
    assert parse_message(inbound_media_message(SID, 3, 2, 20, FRAME)) == Media(
        3, SID, "inbound", 2, 20, FRAME
    )
    assert parse_message(mark_echo_message(SID, 4, "m")) == Mark(4, SID, "m")
    assert parse_message(dtmf_message(SID, 5, "#")) == Dtmf(5, SID, "inbound_track", "#")
    assert parse_message(stop_message(SID, 6, ACCT, CALL)) == Stop(6, SID, ACCT, CALL)


def test_twilio_side_builders_match_documented_shapes() -> None:
    assert orjson.loads(connected_message()) == orjson.loads(CONNECTED)
    assert orjson.loads(start_message(SID, CALL, ACCT, {"k": "v"})) == orjson.loads(START)
    assert orjson.loads(inbound_media_message(SID, 4, 2, 5, FRAME)) == orjson.loads(MEDIA)
    assert orjson.loads(dtmf_message(SID, 5, "1")) == orjson.loads(DTMF)
    assert orjson.loads(mark_echo_message(SID, 6, "label")) == orjson.loads(MARK)
    assert orjson.loads(stop_message(SID, 7, ACCT, CALL)) == orjson.loads(STOP)
    # Key order as documented, too (some peers log and diff raw frames).
    assert list(orjson.loads(START)) == list(orjson.loads(start_message(SID, CALL, ACCT, {})))


def test_server_side_builders_match_documented_shapes() -> None:
    assert orjson.loads(media_message(SID, FRAME)) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": FRAME_B64},
    }
    assert orjson.loads(mark_message(SID, "label")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "label"},
    }
    assert orjson.loads(clear_message(SID)) == {"event": "clear", "streamSid": SID}


def test_server_side_builders_round_trip_through_parse_outbound() -> None:
    assert parse_outbound(media_message(SID, FRAME)) == OutboundMedia(SID, FRAME)
    assert parse_outbound(mark_message(SID, 'a "quoted" name')) == OutboundMark(
        SID, 'a "quoted" name'
    )
    assert parse_outbound(clear_message(SID)) == OutboundClear(SID)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("{", "not valid JSON"),
        ('{"event":"start"}', "unknown event"),
        ('{"event":"clear"}', "missing field streamSid"),
        ('{"event":"media","streamSid":"MZ","media":{"payload":"%%"}}', "not valid base64"),
        ('{"event":"mark","streamSid":"MZ","mark":{}}', "missing field mark.name"),
    ],
)
def test_parse_outbound_malformed(raw: str, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        parse_outbound(raw)


# --- fuzz: only ever ProtocolError -----------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
_events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear"])


def _accepts_or_protocol_error(raw: str | bytes) -> None:
    for parse in (parse_message, parse_outbound):
        with contextlib.suppress(ProtocolError):
            parse(raw)


@given(st.text())
def test_fuzz_text(raw: str) -> None:
    _accepts_or_protocol_error(raw)


@given(st.binary())
def test_fuzz_bytes(raw: bytes) -> None:
    _accepts_or_protocol_error(raw)


@given(_json)
def test_fuzz_json_values(value: Any) -> None:
    _accepts_or_protocol_error(json.dumps(value))


_keys = st.sampled_from(
    ["sequenceNumber", "streamSid", "start", "media", "dtmf", "mark", "stop", "protocol"]
)


@given(_events, st.dictionaries(_keys, _json))
def test_fuzz_event_shaped_objects(event: str, fields: dict[str, Any]) -> None:
    _accepts_or_protocol_error(json.dumps({"event": event, **fields}))


@given(st.sampled_from([START, MEDIA, DTMF, MARK, STOP]), st.data())
def test_fuzz_documented_messages_with_one_field_replaced(base: str, data: st.DataObject) -> None:
    doc = orjson.loads(base)
    inner_key = next(k for k in doc if isinstance(doc[k], dict))
    inner = doc[inner_key]
    key = data.draw(st.sampled_from(sorted(inner)))
    inner[key] = data.draw(_json)
    _accepts_or_protocol_error(json.dumps(doc))
