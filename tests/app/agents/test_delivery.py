"""Signed record delivery: signature, retries with backoff, final failures."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.agents.analysis import parse_answer, transcript_text
from app.agents.delivery import RecordPoster, sign, verify
from app.dev.local_server import serving


def test_signature_is_hmac_sha256_hex_of_the_body() -> None:
    # Known answer (computed independently: `echo -n body | openssl dgst -sha256 -hmac key`).
    assert sign("key", b"body") == (
        "sha256=515aae133b435d4000956731f68ae5cf5eb85d4f0dc6a546d2bfcd3595ec1ae1"
    )
    assert verify("key", b"body", sign("key", b"body"))
    assert not verify("key", b"body!", sign("key", b"body"))
    assert not verify("key", b"body", None)


async def test_retries_then_delivers_and_stops_on_a_final_4xx() -> None:
    codes = [503, 429, 204, 400]
    seen: list[bytes] = []

    async def endpoint(request: Request) -> Response:
        seen.append(await request.body())
        return Response(status_code=codes[len(seen) - 1])

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    app = Starlette(routes=[Route("/r", endpoint, methods=["POST"])])
    async with serving(app) as url:
        poster = RecordPoster(url + "/r", "s", backoff_s=1.0, sleep=sleep)
        assert await poster.deliver("CA1", b"{}") == {
            "status": "delivered", "attempts": 3, "status_code": 204,
        }  # fmt: skip
        assert sleeps == [1.0, 2.0]  # backoff doubles
        outcome = await poster.deliver("CA1", b"{}")
        assert outcome == {"status": "failed", "attempts": 1, "error": "HTTP 400"}
    gone = RecordPoster(url + "/r", "s", attempts=2, sleep=sleep)  # the server has stopped
    outcome = await gone.deliver("CA1", b"{}")
    assert outcome["status"] == "failed" and outcome["attempts"] == 2
    assert "ConnectError" in outcome["error"]


def test_parse_answer_and_transcript() -> None:
    schema = {"type": "object", "required": ["outcome"]}
    assert parse_answer('{"outcome": "booked"}', schema) == {"outcome": "booked"}
    for text, message in [("{oops", "not valid JSON"), ("[1]", "JSON list"), ("{}", "lacks")]:
        try:
            parse_answer(text, schema)
        except ValueError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(text)
    record = {
        "transcript": [
            {"side": "agent", "text": "Hello.", "at_s": 0.2},
            {"side": "caller", "text": "Book me in.", "at_s": 3.0},
        ],
        "dtmf": [{"digit": "5", "at_s": 1.0}],
        "tool_calls": [{"name": "book", "args": {"d": 1}, "result": {"ok": True}, "at_s": 4.0}],
    }
    assert transcript_text(record).splitlines() == [
        "[    0.2 s] Agent: Hello.",
        "[    1.0 s] Caller pressed key 5",
        "[    3.0 s] Caller: Book me in.",
        '[    4.0 s] [tool book {"d":1} -> {"ok":true}]',
    ]
