"""X-Twilio-Signature: genuine requests pass, anything altered or replayed fails."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from telephony.signatures import (
    compute_signature,
    is_valid_signature,
    public_url,
    signature_algorithm,
    websocket_url,
)

TOKEN = "12345678901234567890123456789012"
URL = "https://voice.example.com/twilio/voice"
PARAMS = {
    "CallSid": "CA00000000000000000000000000000001",
    "AccountSid": "AC00000000000000000000000000000002",
    "From": "+15551234567",
    "To": "+15557654321",
    "CallStatus": "ringing",
}


def test_signature_matches_twilio_algorithm() -> None:
    # Independent statement of the algorithm: URL + sorted name+value pairs, HMAC-SHA1, base64.
    data = URL + "".join(k + PARAMS[k] for k in sorted(PARAMS))
    expected = base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest())
    assert compute_signature(TOKEN, URL, PARAMS) == expected.decode()


def test_valid_signature() -> None:
    assert is_valid_signature(TOKEN, URL, PARAMS, compute_signature(TOKEN, URL, PARAMS))


def test_forged_signature_with_another_token() -> None:
    forged = compute_signature("0" * 32, URL, PARAMS)
    assert not is_valid_signature(TOKEN, URL, PARAMS, forged)
    assert not is_valid_signature(TOKEN, URL, PARAMS, "garbage")


def test_replayed_against_another_url() -> None:
    sig = compute_signature(TOKEN, URL, PARAMS)
    assert not is_valid_signature(TOKEN, "https://voice.example.com/twilio/status", PARAMS, sig)
    assert not is_valid_signature(TOKEN, "https://evil.example.com/twilio/voice", PARAMS, sig)


def test_replayed_with_other_params() -> None:
    sig = compute_signature(TOKEN, URL, PARAMS)
    assert not is_valid_signature(TOKEN, URL, {**PARAMS, "From": "+15550000000"}, sig)
    assert not is_valid_signature(TOKEN, URL, {**PARAMS, "Extra": "1"}, sig)
    assert not is_valid_signature(TOKEN, URL, {}, sig)


@pytest.mark.parametrize("missing", [None, ""])
def test_missing_header_is_invalid(missing: str | None) -> None:
    assert not is_valid_signature(TOKEN, URL, PARAMS, missing)


def test_default_port_variants_are_accepted() -> None:
    # Twilio is inconsistent about :443 in the signed URL; the validator tries both forms.
    sig = compute_signature(TOKEN, "https://voice.example.com:443/twilio/voice", PARAMS)
    assert is_valid_signature(TOKEN, URL, PARAMS, sig)


def test_websocket_upgrade_is_signed_over_wss_with_empty_params() -> None:
    wss = websocket_url("https://voice.example.com/twilio/media")
    assert wss == "wss://voice.example.com/twilio/media"
    sig = compute_signature(TOKEN, wss, {})
    assert is_valid_signature(TOKEN, wss, {}, sig)
    # The https:// form of the same URL does not validate (protocols.md §2).
    assert not is_valid_signature(TOKEN, "https://voice.example.com/twilio/media", {}, sig)


def test_hmac_sha256_settings() -> None:
    algorithm = signature_algorithm("key=webhooks_sharedkey_x,algorithm=HMAC_SHA256")
    assert algorithm == "HMAC_SHA256"
    assert signature_algorithm(None) == "HMAC_SHA1"
    sig = compute_signature(TOKEN, URL, PARAMS, algorithm)
    assert is_valid_signature(TOKEN, URL, PARAMS, sig, algorithm)
    assert not is_valid_signature(TOKEN, URL, PARAMS, sig)


def test_empty_token_is_refused_without_leaking() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_signature("", URL, PARAMS)


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        ("https://v.example.com", "/twilio/voice", "", "https://v.example.com/twilio/voice"),
        ("https://v.example.com/", "/twilio/voice", "", "https://v.example.com/twilio/voice"),
        (
            "https://v.example.com:8443",
            "twilio/voice",
            "",
            "https://v.example.com:8443/twilio/voice",
        ),
        (
            "https://v.example.com/bot/",
            "/twilio/voice",
            "",
            "https://v.example.com/bot/twilio/voice",
        ),
        (
            "https://v.example.com",
            "/twilio/voice",
            "a=1&b=2",
            "https://v.example.com/twilio/voice?a=1&b=2",
        ),
        (
            "https://v.example.com",
            "/twilio/voice",
            "?a=1",
            "https://v.example.com/twilio/voice?a=1",
        ),
    ],
)
def test_public_url(base: str, path: str, query: str, expected: str) -> None:
    assert public_url(base, path, query) == expected


def test_public_url_rejects_relative_base() -> None:
    with pytest.raises(ValueError):
        public_url("v.example.com", "/twilio/voice")


@pytest.mark.parametrize(
    ("http", "ws"),
    [
        ("https://v.example.com/twilio/media", "wss://v.example.com/twilio/media"),
        ("http://127.0.0.1:8000/twilio/media", "ws://127.0.0.1:8000/twilio/media"),
        ("wss://v.example.com/m", "wss://v.example.com/m"),
    ],
)
def test_websocket_url(http: str, ws: str) -> None:
    assert websocket_url(http) == ws


def test_websocket_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError):
        websocket_url("ftp://v.example.com/m")
