"""End-to-end fixtures: the real server (uvicorn) in this event loop, the real google-genai
SDK inside it talking TLS to the fake Live server, and a simulated Twilio caller.

    async def test_x(stack):
        s = await stack({"greeting": {"clip": "tone:1000:1"}}, tools="end_call")
        report = await simulate_call(call_options(s, audio=silence(0.2)))
        record = await call_record(s, report.call_sid)

Every stack writes its recordings under the test's `tmp_path` and stops at teardown.
Calls run in real time, so scenarios here use short clips (tones, see
`app/live/fake/tones.py`) wherever the words do not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import wave
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from app.dev.fakes.live import Scenario
from app.dev.fakes.twilio_caller import CallOptions
from app.dev.fakes.twilio_rest import FakeTwilioState, fake_twilio_app, serve_in_thread
from app.dev.local_stack import LocalStack, local_stack
from telephony.signatures import SIGNATURE_HEADER, compute_signature


class StackFactory(Protocol):
    def __call__(
        self, scenario: Scenario | dict[str, Any] | None = None, **settings: Any
    ) -> Awaitable[LocalStack]: ...


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Start a whole local stack: `await stack(scenario, **settings)` (Settings fields)."""
    async with contextlib.AsyncExitStack() as exits:

        async def make(
            scenario: Scenario | dict[str, Any] | None = None, **settings: Any
        ) -> LocalStack:
            if isinstance(scenario, dict):
                scenario = Scenario.from_dict(scenario)
            settings.setdefault("recordings_dir", tmp_path / "recordings")
            settings.setdefault("tools", "end_call,transfer_call")
            return await exits.enter_async_context(local_stack(scenario, **settings))

        yield make


@dataclass
class FakeTwilio:
    """The fake Twilio REST API, served on loopback from a thread."""

    url: str
    state: FakeTwilioState

    def settings(self) -> dict[str, Any]:
        """Stack settings that point the server's REST client at this fake."""
        return {
            "twilio_account_sid": self.state.account_sid,
            "twilio_auth_token": self.state.auth_token,
            "twilio_api_base_url": self.url,
        }


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    app, state = fake_twilio_app()
    with serve_in_thread(app) as url:
        yield FakeTwilio(url, state)


def call_options(s: LocalStack, audio: NDArray[np.int16], **options: Any) -> CallOptions:
    """Options for one simulated call to `s`; generous caps so no call can hang a test."""
    options.setdefault("listen_seconds", 1.0)
    options.setdefault("max_seconds", 30.0)
    return CallOptions(base_url=s.base_url, auth_token=s.auth_token, audio=audio, **options)


async def ring(s: LocalStack, options: CallOptions) -> None:
    """Twilio's signed voice webhook on its own, then wait until the greeting is ready.

    Real Twilio takes hundreds of milliseconds to dial the stream after fetching TwiML;
    on loopback the stream would race the pre-warmed Live session. Ringing first makes
    the start of the call deterministic (the greeting's audio is waiting). The simulator
    posts the webhook again, as a Twilio retry would; pre-warm is idempotent.
    """
    url = s.base_url + "/twilio/voice"
    params = {
        "CallSid": options.call_sid,
        "AccountSid": options.account_sid,
        "From": options.from_number,
        "To": options.to_number,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    headers = {SIGNATURE_HEADER: compute_signature(s.auth_token, url, params)}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.post(url, data=params, headers=headers)
    assert response.status_code == 200, response.text
    assert s.fake is not None
    count = len(s.fake.sessions) + 1
    session = (await asyncio.wait_for(s.fake.wait_for_sessions(count), 10))[-1]
    for _ in range(500):
        if "turn_complete" in session.event_names():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the pre-warmed session never finished its greeting")


async def call_record(s: LocalStack, call_sid: str, seconds: float = 10.0) -> dict[str, Any]:
    """The call record `{recordings_dir}/{call_sid}.json`, once the server has written it.

    The server finishes a call (recording, record) just after the socket closes.
    """
    path = s.settings.recordings_dir / f"{call_sid}.json"
    for _ in range(int(seconds / 0.05)):
        if await asyncio.to_thread(path.is_file):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no call record {path.name} within {seconds} s")
    text = await asyncio.to_thread(path.read_text, "utf-8")
    record: dict[str, Any] = json.loads(text)
    return record


async def recording(s: LocalStack, call_sid: str) -> NDArray[np.int16]:
    """The call's stereo WAV as (samples, 2), caller left and agent right, once written."""
    await call_record(s, call_sid)  # the record is written after the WAV is closed
    path = s.settings.recordings_dir / f"{call_sid}.wav"

    def read() -> bytes:
        with wave.open(str(path)) as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
            return wav.readframes(wav.getnframes())

    data = await asyncio.to_thread(read)
    return np.frombuffer(data, "<i2").reshape(-1, 2)
