"""Console sessions and origin checks, without a server."""

from __future__ import annotations

import time

from starlette.requests import Request

from app.console.auth import ConsoleAuth

TOKEN = "admin-token-for-tests"


def request(headers: dict[str, str], scheme: str = "http") -> Request:
    scope = {
        "type": "http",
        "scheme": scheme,
        "method": "GET",
        "path": "/console/",
        "query_string": b"",
        "server": ("127.0.0.1", 8080),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope)


def test_a_session_is_signed_and_expires() -> None:
    auth = ConsoleAuth(TOKEN, public_base_url=None, trust_proxy=False)
    cookie = auth.new_session()
    assert auth.valid_session(cookie)
    body, _, mac = cookie.rpartition(".")
    version, expiry, nonce = body.split(".")
    assert not auth.valid_session(f"{version}.{int(expiry) + 999}.{nonce}.{mac}"), "tampered"
    assert not auth.valid_session(cookie, now=time.time() + 13 * 3600), "expired"
    assert not auth.valid_session("") and not auth.valid_session("a.b.c")
    other = ConsoleAuth("another-token", public_base_url=None, trust_proxy=False)
    assert not other.valid_session(cookie), "changing the token logs everyone out"


def test_wrong_tokens_are_throttled() -> None:
    auth = ConsoleAuth(TOKEN, public_base_url=None, trust_proxy=False)
    assert auth.check_token(TOKEN) and not auth.throttled()
    for _ in range(10):
        assert not auth.check_token("guess")
    assert auth.throttled()


def test_origin_must_be_this_console() -> None:
    auth = ConsoleAuth(TOKEN, public_base_url=None, trust_proxy=False)
    host = {"host": "127.0.0.1:8080"}
    assert auth.same_origin(request({**host, "origin": "http://127.0.0.1:8080"}))
    assert not auth.same_origin(request({**host, "origin": "http://127.0.0.1:9999"}))
    assert not auth.same_origin(request({**host, "origin": "https://evil.example"}))
    assert not auth.same_origin(request({**host, "origin": "null"}))
    assert not auth.same_origin(request(host)), "no Origin: not one of our pages"


def test_behind_a_proxy_the_public_origin_counts() -> None:
    auth = ConsoleAuth(TOKEN, public_base_url="https://bot.example.com", trust_proxy=False)
    inside = {"host": "10.0.0.5:8080", "origin": "https://bot.example.com"}
    assert auth.same_origin(request(inside))
    assert auth.secure_cookie(request(inside))
    forwarded = ConsoleAuth(TOKEN, public_base_url=None, trust_proxy=True)
    headers = {
        "host": "10.0.0.5:8080",
        "origin": "https://console.example.com",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "console.example.com",
    }
    assert forwarded.same_origin(request(headers)) and forwarded.secure_cookie(request(headers))
    untrusted = ConsoleAuth(TOKEN, public_base_url=None, trust_proxy=False)
    assert not untrusted.same_origin(request(headers)), "forwarded headers need TRUST_PROXY"
