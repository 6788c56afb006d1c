"""TwiML: what the service answers with, and the simulator's reading of it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from telephony.errors import ProtocolError
from telephony.twiml import (
    StreamInstruction,
    dial_twiml,
    parse_stream_twiml,
    say_and_hangup_twiml,
    stream_twiml,
)

URL = "wss://voice.example.com/twilio/media"


def _root(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_stream_twiml_shape() -> None:
    xml = stream_twiml(URL, {"token": "t-1", "caller": "+15551234567"}, "https://x.example/cb")
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = _root(xml)
    assert [child.tag for child in root] == ["Connect", "Hangup"]
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == URL
    assert stream.get("statusCallback") == "https://x.example/cb"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"token": "t-1", "caller": "+15551234567"}


def test_stream_twiml_escapes_values_and_round_trips() -> None:
    params = {"odd": "a&b<c>\"d'", "empty": ""}
    assert parse_stream_twiml(stream_twiml(URL, params)) == StreamInstruction(URL, params, None)


def test_stream_twiml_without_status_callback_has_no_attribute() -> None:
    stream = _root(stream_twiml(URL, {})).find("./Connect/Stream")
    assert stream is not None
    assert "statusCallback" not in stream.attrib


@pytest.mark.parametrize(
    "url",
    [
        "https://voice.example.com/twilio/media",
        "ws://voice.example.com/twilio/media",
        "wss:///path-only",
        "voice.example.com/twilio/media",
        "wss://voice.example.com/twilio/media?token=1",
        "wss://voice.example.com/twilio/media?",
        "wss://voice.example.com/twilio/media#frag",
    ],
)
def test_stream_twiml_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="stream URL"):
        stream_twiml(url, {})


def test_stream_twiml_parameter_limits() -> None:
    stream_twiml(URL, {"n": "v" * 498})  # 499 chars: allowed
    with pytest.raises(ValueError, match="under 500"):
        stream_twiml(URL, {"n": "v" * 499})
    with pytest.raises(ValueError, match="empty"):
        stream_twiml(URL, {"": "v"})


def test_say_and_hangup() -> None:
    root = _root(say_and_hangup_twiml("All lines are busy <sorry>"))
    assert [c.tag for c in root] == ["Say", "Hangup"]
    assert root[0].text == "All lines are busy <sorry>"


def test_dial_with_and_without_announcement() -> None:
    root = _root(dial_twiml("+15557654321", "Transferring you now"))
    assert [(c.tag, c.text) for c in root] == [
        ("Say", "Transferring you now"),
        ("Dial", "+15557654321"),
    ]
    assert [c.tag for c in _root(dial_twiml("+15557654321", None))] == ["Dial"]
    with pytest.raises(ValueError):
        dial_twiml("", None)


def test_parse_accepts_ws_for_local_servers() -> None:
    xml = (
        '<Response><Connect><Stream url="ws://127.0.0.1:9/m" statusCallback="http://cb">'
        '<Parameter name="a" value="1"/><Parameter name="b"/></Stream></Connect></Response>'
    )
    assert parse_stream_twiml(xml) == StreamInstruction(
        "ws://127.0.0.1:9/m", {"a": "1", "b": ""}, "http://cb"
    )


@pytest.mark.parametrize(
    ("xml", "needle"),
    [
        ("<Response><Say>hi</Say>", "not well-formed"),
        ("<Other/>", "root must be <Response>"),
        (say_and_hangup_twiml("busy"), "no <Connect><Stream>"),
        ("<Response><Stream url='wss://x/y'/></Response>", "no <Connect><Stream>"),
        ("<Response><Connect><Stream/></Connect></Response>", "no url"),
        (
            "<Response><Connect><Stream url='wss://x/y'><Parameter value='v'/></Stream>"
            "</Connect></Response>",
            "no name",
        ),
    ],
)
def test_parse_rejects(xml: str, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        parse_stream_twiml(xml)
