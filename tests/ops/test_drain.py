"""Graceful shutdown of a real `voicebot serve` process during a simulated call.

The service runs as a child process (as in a container) against the fake Live server;
the caller is the Twilio simulator. SIGTERM must: fail /readyz, turn new calls away
with a spoken notice, let the call in progress go on for DRAIN_TIMEOUT, then play the
caller a notice, close the stream, write the recording, and exit 0.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.signal import correlate

from app.assets import load_clip_8k
from app.call.drain import Drain
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_call
from app.dev.local_stack import local_stack
from app.twilio.webhooks import DRAINING_NOTICE
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from telephony.signatures import SIGNATURE_HEADER, compute_signature
from tests.ops.process import ServeProcess, eventually
from tests.support.fake_live import FakeLiveFactory

AUTH_TOKEN = "drain-test-auth-token"


def serve_settings(fake: Any, tmp_path: Path, drain_timeout: float) -> dict[str, str]:
    return {
        "GEMINI_API_KEY": "fake-live-key",
        "GEMINI_BASE_URL": fake.base_url,
        "SSL_CERT_FILE": str(fake.ca_pem_path),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "RECORDINGS_DIR": str(tmp_path / "recordings"),
        "DRAIN_TIMEOUT": str(drain_timeout),
    }


async def start_call(
    server: ServeProcess, listen_seconds: float
) -> tuple[asyncio.Task[CallReport], asyncio.Event]:
    """A call in progress: returns once the caller hears the agent's greeting."""
    greeted = asyncio.Event()

    def on_event(kind: str, detail: Mapping[str, Any]) -> None:
        if kind == "first_audio":
            greeted.set()

    options = CallOptions(
        base_url=server.url,
        auth_token=AUTH_TOKEN,
        audio=load_clip_8k("caller_booking"),
        wait_for_greeting_seconds=10.0,
        listen_seconds=listen_seconds,
        max_seconds=90.0,
        on_event=on_event,
    )
    call = asyncio.create_task(simulate_call(options))
    async with asyncio.timeout(30):
        waiter = asyncio.create_task(greeted.wait())
        done, _ = await asyncio.wait({call, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if call in done:
        raise AssertionError(f"the call ended before the greeting: {call.result().to_dict()}")
    return call, greeted


async def post_webhook(server: ServeProcess) -> httpx.Response:
    """A new call arriving (signed like Twilio's)."""
    url = server.url + "/twilio/voice"
    form = {"CallSid": "CA" + secrets.token_hex(16), "From": "+15005550006", "To": "+15005550001"}
    headers = {SIGNATURE_HEADER: compute_signature(AUTH_TOKEN, url, form)}
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.post(url, data=form, headers=headers, timeout=10)


async def readyz(server: ServeProcess) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(server.url + "/readyz", timeout=10)


async def draining(server: ServeProcess) -> bool:
    return (await readyz(server)).status_code == 503


def call_record(tmp_path: Path, call_sid: str) -> dict[str, Any]:
    wav = tmp_path / "recordings" / f"{call_sid}.wav"
    assert wav.is_file() and wav.stat().st_size > 44, "no recording"
    record: dict[str, Any] = json.loads((wav.with_suffix(".json")).read_text("utf-8"))
    assert record["recording"]["status"] == "complete"
    return record


def best_match(heard: NDArray[np.int16], clip: NDArray[np.int16]) -> float:
    """Highest normalised correlation of `clip` (through mu-law, as sent) within `heard`."""
    sent = ulaw_to_pcm16(pcm16_to_ulaw(clip)).astype(np.float64)
    audio = heard.astype(np.float64)
    if audio.size < sent.size:
        return 0.0
    dots = correlate(audio, sent, mode="valid", method="fft")
    window = np.convolve(audio**2, np.ones(sent.size), mode="valid")
    scores = dots / (np.linalg.norm(sent) * np.sqrt(np.maximum(window, 1e-9)))
    return float(scores.max())


def share_heard(heard: NDArray[np.int16], clip: NDArray[np.int16], piece: int = 1600) -> float:
    """Share of the clip's voiced 200 ms pieces found intact in `heard`.

    Robust to playback gaps (a loaded machine can starve the caller's player for a
    frame or two, which breaks a whole-clip correlation but loses no words).
    """
    pieces = [clip[i : i + piece] for i in range(0, clip.size - piece + 1, piece)]
    voiced = [p for p in pieces if np.abs(p).mean() > 300]
    found = sum(1 for p in voiced if best_match(heard, p) > 0.9)
    return found / max(1, len(voiced))


async def test_sigterm_drains_a_call_then_ends_it_with_a_notice(
    fake_live_factory: FakeLiveFactory, tmp_path: Path
) -> None:
    fake = await fake_live_factory()
    drain_timeout = 2.0
    settings = serve_settings(fake, tmp_path, drain_timeout)
    async with ServeProcess(tmp_path, settings) as server:
        # The caller would stay on the line for a minute: only the drain ends this call.
        call, _ = await start_call(server, listen_seconds=60.0)
        loop = asyncio.get_running_loop()
        signalled_at = loop.time()
        server.send_signal(signal.SIGTERM)

        await eventually(lambda: draining(server), 10)
        assert (await readyz(server)).json()["draining"] == "yes"
        healthz = await asyncio.to_thread(
            httpx.get, server.url + "/healthz", trust_env=False, timeout=10
        )
        assert healthz.status_code == 200  # alive, just leaving

        turned_away = await post_webhook(server)
        assert turned_away.status_code == 200
        assert "<Say>" in turned_away.text and DRAINING_NOTICE in turned_away.text
        assert "<Connect>" not in turned_away.text and "<Stream" not in turned_away.text

        report = await asyncio.wait_for(call, 60)
        ended_after = loop.time() - signalled_at
        code = await server.wait_exit(30)
        assert code == 0, server.output()

    # The server ended the call, and not before DRAIN_TIMEOUT.
    assert report.error is None, report.to_dict()
    assert report.ended_by == "server_closed" and report.close_code == 1000
    assert ended_after >= drain_timeout
    # The caller heard the whole notice before the stream closed: its exit mark played.
    assert share_heard(report.heard, load_clip_8k("shutdown_notice")) >= 0.8
    assert any(m.name.startswith("exit") and m.played for m in report.marks), report.marks
    record = call_record(tmp_path, report.call_sid)
    assert record["end_reason"] == "server_shutdown"
    logs = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    events = [line["event"] for line in logs]
    assert "drain.started" in events and "drain.ending_calls" in events
    done = [line for line in logs if line["event"] == "drain.done"]
    assert [d["ended"] for d in done] == ["after_notice"]


async def test_a_call_that_ends_during_the_drain_lets_the_process_exit_early(
    fake_live_factory: FakeLiveFactory, tmp_path: Path
) -> None:
    fake = await fake_live_factory()
    drain_timeout = 300.0  # far longer than this test may take
    settings = serve_settings(fake, tmp_path, drain_timeout)
    async with ServeProcess(tmp_path, settings) as server:
        # The caller speaks, hears the reply, and hangs up after 2 s of quiet.
        call, _ = await start_call(server, listen_seconds=2.0)
        server.send_signal(signal.SIGTERM)
        report = await asyncio.wait_for(call, 60)
        code = await server.wait_exit(60)  # well before DRAIN_TIMEOUT
        assert code == 0, server.output()

    assert report.error is None and report.ended_by == "caller_hangup", report.to_dict()
    record = call_record(tmp_path, report.call_sid)
    assert record["end_reason"] == "caller_hangup"
    assert "drain.done" in server.output() and "by_themselves" in server.output()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_exits_at_once(
    fake_live_factory: FakeLiveFactory, tmp_path: Path, second: signal.Signals
) -> None:
    fake = await fake_live_factory()
    settings = serve_settings(fake, tmp_path, drain_timeout=300.0)
    async with ServeProcess(tmp_path, settings) as server:
        call, _ = await start_call(server, listen_seconds=60.0)
        server.send_signal(signal.SIGTERM)
        await eventually(lambda: draining(server), 10)
        server.send_signal(second)
        code = await server.wait_exit(30)  # not DRAIN_TIMEOUT
        report = await asyncio.wait_for(call, 30)

    assert code == 1, server.output()
    assert report.ended_by in ("server_closed", "error"), report.to_dict()
    # Even a cut call leaves a closed recording and its record.
    assert call_record(tmp_path, report.call_sid)["end_reason"] == "server_shutdown"


async def test_drain_in_process_with_no_grace_ends_calls_at_once(tmp_path: Path) -> None:
    """`Drain` on its own (no signals): DRAIN_TIMEOUT=0 goes straight to the notice.

    The caller talks from the start, over the greeting and over the notice: the model's
    barge-in must not cut the notice short.
    """
    async with local_stack(recordings_dir=tmp_path / "recordings", drain_timeout=0) as stack:
        greeted = asyncio.Event()
        options = CallOptions(
            base_url=stack.base_url,
            auth_token=stack.auth_token,
            audio=load_clip_8k("caller_booking"),
            listen_seconds=60.0,
            max_seconds=90.0,
            on_event=lambda kind, _: greeted.set() if kind == "first_audio" else None,
        )
        call = asyncio.create_task(simulate_call(options))
        await asyncio.wait_for(greeted.wait(), 30)
        assert len(stack.services.active_calls) == 1

        assert await asyncio.wait_for(Drain.for_services(stack.services).run(), 60)
        assert not stack.services.active_calls
        report = await asyncio.wait_for(call, 30)
        async with httpx.AsyncClient(base_url=stack.base_url, trust_env=False) as client:
            assert (await client.get("/readyz")).status_code == 503

    assert report.ended_by == "server_closed" and report.close_code == 1000
    assert share_heard(report.heard, load_clip_8k("shutdown_notice")) >= 0.8
    assert call_record(tmp_path, report.call_sid)["end_reason"] == "server_shutdown"
