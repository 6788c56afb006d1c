"""Security on the real server: signatures, stream tokens, the admin API, path traversal,
oversized bodies, and secrets kept out of the logs of a whole call."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import structlog
from websockets.asyncio.client import connect

from app.dev.local_stack import LocalStack
from app.logs import SECRET_SETTINGS, configure_logging, forget_secrets, register_secrets
from telephony.messages import connected_message, start_message, stop_message
from telephony.signatures import SIGNATURE_HEADER, compute_signature
from tests.reliability.conftest import (
    ACCOUNT,
    StackFactory,
    call_sid,
    place_call,
    signed_twiml,
    stream_sid,
    upgrade_headers,
    wait_for_record,
)

ADMIN = "admin-" + secrets.token_hex(16)
FORM = {"AccountSid": ACCOUNT, "From": "+15550100", "To": "+15550200", "CallStatus": "ringing"}


def form_for(sid: str) -> dict[str, str]:
    return FORM | {"CallSid": sid}


async def post(s: LocalStack, path: str, form: dict[str, str], signature: str | None) -> int:
    headers = {SIGNATURE_HEADER: signature} if signature is not None else {}
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(s.base_url + path, data=form, headers=headers)
    return response.status_code


# --- webhook signatures ----------------------------------------------------------------


async def test_forged_and_replayed_webhook_signatures_are_refused(stack: StackFactory) -> None:
    async with stack({}, greeting="") as s:
        for path in ("/twilio/voice", "/twilio/status"):
            url = s.base_url + path
            form = form_for(call_sid())
            valid = compute_signature(s.auth_token, url, form)
            refused = {
                "unsigned": None,
                "garbage": "bm90IGEgc2lnbmF0dXJl",
                "empty": "",
                "other_account": compute_signature("another-auth-token", url, form),
                "internal_url": compute_signature(
                    s.auth_token, "http://10.0.0.5:8080" + path, form
                ),
                "other_path": compute_signature(s.auth_token, s.base_url + "/elsewhere", form),
                # A captured signature replayed with the body changed (another caller).
                "replayed_altered": valid,
            }
            for name, signature in refused.items():
                body = form | {"From": "+19995550000"} if name == "replayed_altered" else form
                assert await post(s, path, body, signature) == 403, (path, name)
            assert await post(s, path, form, valid) in (200, 204)


async def test_replayed_upgrade_and_stream_token_are_refused(stack: StackFactory) -> None:
    """The upgrade's signature is the same for every call (wss URL, empty params), so a
    captured upgrade replays fine; the single-use stream token is what refuses it."""
    async with stack({"audio": {"speed": 0}}, greeting="") as s:
        sid = call_sid()
        url, params = await signed_twiml(s, sid)
        mz = stream_sid()
        start = _start(mz, sid, params)

        async def stream(frames: list[str], headers: dict[str, str] | None = None) -> int | None:
            async with connect(
                url, additional_headers=headers or upgrade_headers(s, url), proxy=None
            ) as ws:
                for frame in frames:
                    await ws.send(frame)
                with contextlib.suppress(Exception):
                    async for _ in ws:
                        pass
                return ws.close_code

        stop = stop_message(mz, 3, ACCOUNT, sid)
        assert await stream([connected_message(), start, stop]) == 1000  # the real call
        assert await stream([connected_message(), start]) == 1008  # its replay
        other_sid = call_sid()
        _, other_params = await signed_twiml(s, other_sid)
        stolen = _start(stream_sid(), call_sid(), other_params)  # token of another call
        assert await stream([connected_message(), stolen]) == 1008
        forged = dict(other_params) | {"stream_token": "1.2.3"}
        assert await stream([connected_message(), _start(mz, other_sid, forged)]) == 1008
        # The other call's own token still works: the failed attempts did not burn it.
        other_stop = stop_message(mz, 3, ACCOUNT, other_sid)
        assert (
            await stream([connected_message(), _start(mz, other_sid, other_params), other_stop])
            == 1000
        )
        assert (await wait_for_record(s, sid))["end_reason"] == "caller_hangup"


async def test_an_expired_stream_token_is_refused(stack: StackFactory) -> None:
    async with stack({}, greeting="", stream_token_ttl=1.0) as s:
        sid = call_sid()
        url, params = await signed_twiml(s, sid)
        await asyncio.sleep(2.2)
        async with connect(url, additional_headers=upgrade_headers(s, url), proxy=None) as ws:
            await ws.send(connected_message())
            await ws.send(_start(stream_sid(), sid, params))
            with contextlib.suppress(Exception):
                async for _ in ws:
                    pass
            assert ws.close_code == 1008
            assert ws.close_reason == "stream token expired"


def _start(mz: str, sid: str, params: dict[str, str]) -> str:
    return start_message(mz, sid, ACCOUNT, params)


# --- oversized bodies ------------------------------------------------------------------


async def test_oversized_webhook_bodies_are_refused_before_reading_them(
    stack: StackFactory,
) -> None:
    async with stack({}, greeting="") as s:
        url = s.base_url + "/twilio/voice"
        form = form_for(call_sid()) | {"Junk": "x" * 1_000_000}
        signed = {SIGNATURE_HEADER: compute_signature(s.auth_token, url, form)}

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"Junk=" + b"x" * 10_000 + b"&"

        async with httpx.AsyncClient(trust_env=False) as client:
            declared = await client.post(url, data=form, headers=signed)
            chunked = await client.post(  # no Content-Length: counted while reading
                url,
                content=chunks(),
                headers=signed | {"content-type": "application/x-www-form-urlencoded"},
            )
            after = await client.get(s.base_url + "/healthz")
    assert declared.status_code == 413 and chunked.status_code == 413
    assert after.status_code == 200


# --- the admin API ---------------------------------------------------------------------


async def raw_get(base_url: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """GET with the request target sent exactly as given (clients normalise `..`)."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    status = int(response.split(b" ", 2)[1])
    return status, response


async def test_admin_endpoints_need_the_right_bearer_token(stack: StackFactory) -> None:
    async with stack({"audio": {"speed": 0}}, greeting="", admin_token=ADMIN) as s:
        report = await place_call(s, listen_seconds=1.5)
        await wait_for_record(s, report.call_sid)
        paths = ["/calls", f"/calls/{report.call_sid}", f"/calls/{report.call_sid}/recording"]
        wrong = {
            "none": {},
            "wrong": {"Authorization": "Bearer not-" + ADMIN},
            "prefix": {"Authorization": "Bearer " + ADMIN[:-1]},
            "basic": {"Authorization": "Basic " + ADMIN},
            "empty": {"Authorization": "Bearer "},
            "twilio_token": {"Authorization": "Bearer " + s.auth_token},
        }
        for path in paths:
            for name, headers in wrong.items():
                status, body = await raw_get(s.base_url, path, headers)
                assert status == 401, (path, name)
                assert report.call_sid.encode() not in body.split(b"\r\n\r\n", 1)[1]
            status, _ = await raw_get(s.base_url, path + f"?token={ADMIN}", {})
            assert status == 401  # a token in the URL is not accepted (it would be logged)
            status, body = await raw_get(s.base_url, path, {"Authorization": f"Bearer {ADMIN}"})
            assert status == 200 and body


async def test_without_an_admin_token_the_admin_api_does_not_exist(stack: StackFactory) -> None:
    async with stack({}, greeting="") as s:
        for headers in ({}, {"Authorization": "Bearer anything"}):
            status, _ = await raw_get(s.base_url, "/calls", headers)
            assert status == 404


TRAVERSALS = [
    "/calls/../outside/secret.json",
    "/calls/..%2Foutside%2Fsecret",
    "/calls/..%2Foutside%2Fsecret/recording",
    "/calls/%2e%2e%2foutside%2fsecret/recording",
    "/calls/%252e%252e%252foutside%252fsecret",
    "/calls/..%5Coutside%5Csecret",
    "/calls/CA0123456789ab%00/recording",
    "/calls/CA0123456789ab%2F..%2F..%2Foutside%2Fsecret",
    "/calls/CAlinkedoutside00/recording",
    "/calls/CAlinkedoutside00",
    "/calls/%2Fetc%2Fpasswd",
    "/calls/CA0123456789ab/recording?format=../../outside/secret",
]


async def test_path_traversal_never_reads_outside_the_recordings(
    stack: StackFactory, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = "TOP-SECRET-" + secrets.token_hex(8)
    for name in ("secret.json", "secret.wav", "secret"):
        (outside / name).write_text(json.dumps({"marker": marker}))
    async with stack({}, greeting="", admin_token=ADMIN) as s:
        recordings = s.settings.recordings_dir
        # A symlink planted in the recordings directory, pointing out of it.
        (recordings / "CAlinkedoutside00.json").symlink_to(outside / "secret.json")
        (recordings / "CAlinkedoutside00.wav").symlink_to(outside / "secret.wav")
        auth = {"Authorization": f"Bearer {ADMIN}"}
        answers = {target: await raw_get(s.base_url, target, auth) for target in TRAVERSALS}
    for target, (status, body) in answers.items():
        assert status in (400, 404), (target, status)
        assert marker.encode() not in body, target


# --- secrets in logs -------------------------------------------------------------------


@pytest.fixture
def rendered_logs() -> Iterator[io.StringIO]:
    """The real logging pipeline (JSON lines, DEBUG, redaction) writing to a buffer."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("DEBUG", "json", stream=out)
    try:
        yield out
    finally:
        forget_secrets()
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)


async def test_secrets_never_reach_the_logs_of_a_whole_call(
    stack: StackFactory, rendered_logs: io.StringIO
) -> None:
    gemini_key = "AIzaSy-reliability-" + secrets.token_hex(12)
    async with stack(
        {"audio": {"speed": 0}}, greeting="", gemini_api_key=gemini_key, admin_token=ADMIN
    ) as s:
        # What `voicebot serve` does at start (app.logs.configure_from_settings).
        register_secrets(s.settings.secret(name) for name in SECRET_SETTINGS)
        report = await place_call(s, listen_seconds=1.5)
        await wait_for_record(s, report.call_sid)
        # Failures that log: a bad webhook signature, a wrong admin token, a replayed token.
        assert await post(s, "/twilio/voice", form_for(call_sid()), "forged") == 403
        await raw_get(s.base_url, "/calls", {"Authorization": "Bearer " + s.auth_token})
        logging.getLogger("voicebot.test").info("header x-goog-api-key: %s", gemini_key)
        structlog.get_logger().warning("oops", detail=f"token={ADMIN}", api_key=gemini_key)
        auth_token = s.auth_token
        token = report.custom_parameters["stream_token"]
    text = rendered_logs.getvalue()
    events = {json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")}
    assert {"call.started", "call.ended", "webhook.bad_signature"} <= events
    for secret in (gemini_key, auth_token, ADMIN):
        assert secret not in text
    assert token not in text  # the single-use stream token is not logged either
    assert "[redacted]" in text  # the planted lines were scrubbed, not dropped
