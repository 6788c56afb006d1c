"""Shared helpers for the reliability suite: the real stack, whole calls, raw streams.

Every scenario runs the product as deployed: uvicorn + Starlette on a loopback port, the
fake Live server over TLS (real google-genai client), and Twilio's part played either by
`app.dev.fakes.twilio_caller` (whole calls) or by raw `websockets` connections (hostile input).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from websockets.asyncio.client import ClientConnection, connect

from app.assets import load_clip_8k
from app.dev.fakes.live.scenario import Scenario
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_call
from app.dev.local_stack import LocalStack, local_stack
from telephony.messages import connected_message, start_message
from telephony.signatures import SIGNATURE_HEADER, compute_signature
from telephony.twiml import parse_stream_twiml

ACCOUNT = "AC" + "0" * 32
RATE = 8000

StackFactory = Callable[..., AbstractAsyncContextManager[LocalStack]]


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def stream_sid() -> str:
    return "MZ" + secrets.token_hex(16)


def silence(seconds: float) -> NDArray[np.int16]:
    return np.zeros(int(seconds * RATE), np.int16)


def speech(name: str = "caller_goodbye") -> NDArray[np.int16]:
    return load_clip_8k(name)


@pytest.fixture
def stack(tmp_path: Path) -> StackFactory:
    """`async with stack(scenario_dict, **settings) as s:` the whole product on loopback.

    Defaults: recordings in tmp_path, no tools beyond end_call, the fake Live server.
    """

    def make(
        scenario: dict[str, Any] | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[LocalStack]:
        settings: dict[str, Any] = {
            "recordings_dir": tmp_path / "recordings",
            "tools": "end_call",
        }
        settings.update(overrides)
        return local_stack(Scenario.from_dict(scenario or {}), env_file=None, **settings)

    return make


async def place_call(
    s: LocalStack, audio: NDArray[np.int16] | None = None, **options: Any
) -> CallReport:
    """One whole simulated call (webhook, TwiML, signed stream) against the stack."""
    defaults: dict[str, Any] = {"listen_seconds": 3.0, "max_seconds": 60.0}
    return await simulate_call(
        CallOptions(
            base_url=s.base_url,
            auth_token=s.auth_token,
            audio=speech() if audio is None else audio,
            **(defaults | options),
        )
    )


async def wait_for_record(s: LocalStack, sid: str, seconds: float = 15.0) -> dict[str, Any]:
    """The call record, once the server has written it (just after the stream closes)."""
    path = s.settings.recordings_dir / f"{sid}.json"
    for _ in range(int(seconds / 0.05)):
        if path.is_file():
            data: dict[str, Any] = json.loads(path.read_text("utf-8"))
            return data
        await asyncio.sleep(0.05)
    raise AssertionError(f"no call record for {sid} after {seconds} s")


async def eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll until `predicate()` holds (state on the server, seen from the test)."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {seconds} s")


def heard_seconds(report: CallReport, threshold: float = 300.0) -> float:
    """Seconds of agent speech the caller heard (20 ms frames above `threshold` RMS)."""
    frames = report.heard[: report.heard.size // 160 * 160].reshape(-1, 160).astype(np.float64)
    if not frames.size:
        return 0.0
    rms = np.sqrt((frames**2).mean(axis=1))
    return float((rms > threshold).sum() * 0.02)


# --- raw streams: Twilio's side by hand ------------------------------------------------


@dataclass
class RawStream:
    """A signed Media Stream opened by hand, for hostile input."""

    ws: ClientConnection
    call_sid: str
    stream_sid: str
    parameters: dict[str, str]

    def start(self, **changes: Any) -> str:
        return start_message(self.stream_sid, self.call_sid, ACCOUNT, self.parameters, **changes)

    async def close_code(self, seconds: float = 15.0) -> int | None:
        """Read until the server closes; its close code (None if it never closed)."""
        try:
            async with asyncio.timeout(seconds):
                async for _ in self.ws:
                    pass
        except TimeoutError:
            return None
        except Exception:  # a protocol error on our side still leaves a close code
            pass
        return self.ws.close_code


async def signed_twiml(s: LocalStack, sid: str) -> tuple[str, dict[str, str]]:
    """POST a signed voice webhook; the stream URL and its parameters (with the token)."""
    url = s.base_url + "/twilio/voice"
    form = {"CallSid": sid, "AccountSid": ACCOUNT, "From": "+15550100", "To": "+15550200"}
    headers = {SIGNATURE_HEADER: compute_signature(s.auth_token, url, form)}
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(url, data=form, headers=headers)
    assert response.status_code == 200, response.text
    instruction = parse_stream_twiml(response.text)
    return instruction.url, dict(instruction.parameters)


def upgrade_headers(s: LocalStack, url: str, token: str | None = None) -> dict[str, str]:
    return {SIGNATURE_HEADER: compute_signature(token or s.auth_token, url, {})}


@pytest.fixture
def raw_stream() -> Callable[..., AbstractAsyncContextManager[RawStream]]:
    """`async with raw_stream(stack) as r:` a signed, token-carrying stream, not yet started."""
    import contextlib

    @contextlib.asynccontextmanager
    async def open_stream(
        s: LocalStack, *, send_connected: bool = True
    ) -> AsyncIterator[RawStream]:
        sid = call_sid()
        url, params = await signed_twiml(s, sid)
        async with connect(
            url,
            additional_headers=upgrade_headers(s, url),
            proxy=None,
            compression=None,
            max_size=None,
            ping_interval=None,
        ) as ws:
            if send_connected:
                await ws.send(connected_message())
            yield RawStream(ws, sid, stream_sid(), params)

    return open_stream
