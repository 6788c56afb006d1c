"""The HTTP and WebSocket surface: signatures, stream tokens, bad frames (real sockets)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
import websockets

from app.dev.local_server import free_port, serving
from app.server import build_services, create_app
from app.settings import load_settings
from telephony.messages import connected_message, inbound_media_message, start_message
from telephony.mulaw import pcm16_to_ulaw
from telephony.signatures import compute_signature
from telephony.twiml import parse_stream_twiml
from tests.app.call.bridge_fakes import ScriptedConnector

TOKEN = "test-auth-token-1234"
CALL = "CA" + "a" * 32
STREAM = "MZ" + "1" * 32
FORM = {"CallSid": CALL, "AccountSid": "AC" + "0" * 32, "From": "+15550001", "To": "+15550002"}


@dataclass
class Server:
    base: str
    connector: ScriptedConnector
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/twilio/media"

    async def post_voice(self, form: dict[str, str], signature: str | None) -> httpx.Response:
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers["x-twilio-signature"] = signature
        return await self.http.post(
            f"{self.base}/twilio/voice", content=urlencode(form), headers=headers
        )

    async def stream_params(self) -> dict[str, str]:
        signature = compute_signature(TOKEN, f"{self.base}/twilio/voice", FORM)
        response = await self.post_voice(FORM, signature)
        assert response.status_code == 200
        return parse_stream_twiml(response.text).parameters

    def signed(self) -> dict[str, str]:
        return {"x-twilio-signature": compute_signature(TOKEN, self.ws_url, {})}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    port = free_port()
    settings = load_settings(
        env_file=None,
        twilio_auth_token=TOKEN,
        public_base_url=f"http://127.0.0.1:{port}",
        recordings_dir=tmp_path,
        greeting="",
        tools="end_call",
    )
    connector = ScriptedConnector()
    services = build_services(settings, connector=connector)
    async with serving(create_app(services), port) as base, httpx.AsyncClient() as http:
        yield Server(base, connector, http)


async def test_signed_webhook_returns_stream_twiml_with_parameters_then_hangup(
    server: Server,
) -> None:
    response = await server.post_voice(
        FORM, compute_signature(TOKEN, f"{server.base}/twilio/voice", FORM)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    instruction = parse_stream_twiml(response.text)
    assert instruction.url == server.ws_url
    assert instruction.parameters["call_sid"] == CALL
    assert instruction.parameters["stream_token"]
    assert "<Hangup" in response.text


@pytest.mark.parametrize(
    "how",
    ["unsigned", "forged", "other_url", "replayed_other_params", "other_account"],
)
async def test_unsigned_forged_or_replayed_webhooks_get_403(server: Server, how: str) -> None:
    url = f"{server.base}/twilio/voice"
    signature = {
        "unsigned": None,
        "forged": "bm90IGEgc2lnbmF0dXJl",
        "other_url": compute_signature(TOKEN, "https://elsewhere.example/twilio/voice", FORM),
        "replayed_other_params": compute_signature(TOKEN, url, FORM | {"From": "+1999"}),
        "other_account": compute_signature("another-token", url, FORM),
    }[how]
    assert (await server.post_voice(FORM, signature)).status_code == 403


async def test_oversized_webhook_body_is_refused(server: Server) -> None:
    form = FORM | {"Junk": "x" * 100_000}
    signature = compute_signature(TOKEN, f"{server.base}/twilio/voice", form)
    assert (await server.post_voice(form, signature)).status_code == 413


async def test_status_callback_is_signed_too(server: Server) -> None:
    form = {"CallSid": CALL, "StreamEvent": "stream-started"}
    url = f"{server.base}/twilio/status"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    ok = await server.http.post(
        url,
        content=urlencode(form),
        headers=headers | {"x-twilio-signature": compute_signature(TOKEN, url, form)},
    )
    assert ok.status_code == 204
    refused = await server.http.post(url, content=urlencode(form), headers=headers)
    assert refused.status_code == 403


async def closed_code(server: Server, headers: dict[str, str], *messages: str | bytes) -> int:
    async with websockets.connect(server.ws_url, additional_headers=headers) as ws:
        try:
            for message in messages:
                await ws.send(message)
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass  # the server closed (maybe before we were done sending)
    assert ws.close_code is not None
    return ws.close_code


def start_for(params: dict[str, str], call_sid: str = CALL) -> str:
    return start_message(STREAM, call_sid, "AC" + "0" * 32, params)


STOP = (
    '{"event":"stop","sequenceNumber":"9","streamSid":"'
    + STREAM
    + '","stop":{"accountSid":"AC1","callSid":"'
    + CALL
    + '"}}'
)


async def test_unsigned_upgrade_is_closed_with_1008_before_any_audio(server: Server) -> None:
    params = await server.stream_params()
    assert await closed_code(server, {}, connected_message(), start_for(params)) == 1008
    https_form = {"x-twilio-signature": compute_signature(TOKEN, server.base + "/twilio/media", {})}
    assert await closed_code(server, https_form, connected_message(), start_for(params)) == 1008
    assert not any(s.audio for s in server.connector.sessions)


async def test_stream_token_must_match_the_call_and_is_single_use(server: Server) -> None:
    params = await server.stream_params()
    other_call = "CA" + "b" * 32
    assert await closed_code(server, server.signed(), start_for(params, other_call)) == 1008
    no_token = {k: v for k, v in params.items() if k != "stream_token"}
    assert await closed_code(server, server.signed(), start_for(no_token)) == 1008
    # A valid first use ends normally; replaying the same token is refused.
    first = await closed_code(server, server.signed(), connected_message(), start_for(params), STOP)
    assert first == 1000
    assert await closed_code(server, server.signed(), start_for(params)) == 1008


async def test_bad_frames_are_skipped_and_the_call_goes_on(server: Server) -> None:
    params = await server.stream_params()
    payload = pcm16_to_ulaw(np.full(160, 1000, np.int16))
    code = await closed_code(
        server,
        server.signed(),
        connected_message(),
        start_for(params),
        inbound_media_message(STREAM, 2, 1, 0, payload),
        "{not json",
        b"\x00\xff binary",
        '{"event":"media","streamSid":"' + STREAM + '","media":{"payload":"***"}}',
        inbound_media_message(STREAM, 3, 2, 20, payload),
        STOP,
    )
    assert code == 1000
    session = server.connector.sessions[0]
    assert len(session.audio) == 2  # both good frames reached Live, 16 kHz, 20 ms each
    assert all(len(chunk) == 640 for chunk in session.audio)


async def test_a_flood_of_bad_frames_closes_the_stream_with_a_reason(server: Server) -> None:
    params = await server.stream_params()
    garbage = [base64.b64encode(bytes([i])).decode() for i in range(30)]
    assert await closed_code(server, server.signed(), start_for(params), *garbage) == 1007


async def test_healthz(server: Server) -> None:
    assert (await server.http.get(f"{server.base}/healthz")).json() == {"status": "ok"}
    assert (await server.http.get(f"{server.base}/readyz")).status_code == 200


async def test_the_token_covers_the_stream_parameters(server: Server) -> None:
    """The agent (and every other <Parameter>) is covered: a changed one is refused."""
    params = await server.stream_params()
    assert params["agent"] == "default"
    for name, value in (("agent", "vip"), ("from", "+15550000000"), ("extra", "x")):
        altered = params | {name: value}
        assert await closed_code(server, server.signed(), start_for(altered)) == 1008
    first = await closed_code(server, server.signed(), connected_message(), start_for(params), STOP)
    assert first == 1000
