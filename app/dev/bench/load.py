"""The load `voicebot bench` puts on the server, and what it samples meanwhile.

N Twilio-faithful callers (`app.dev.fakes.twilio_caller`) run in this process; a sampler
reads the server's RSS and CPU every 250 ms and this loop's lag every 10 ms. The codec's
and the message path's CPU are micro-timed here too, apart from the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.dev.bench.scenarios import CallerScript
from app.dev.bench.stack import ProcStat, Stack, fetch_timings
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_calls
from telephony.messages import inbound_media_message, media_message, parse_message
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from telephony.resample import inbound_resampler, outbound_resampler


@dataclass
class Sampler:
    """Samples server RSS and this process's event-loop lag while the calls run."""

    server: ProcStat
    rss: list[tuple[float, int]] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sample = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.loop_lag.append(loop.time() - before - 0.01)
            now = loop.time()
            if now >= next_sample:
                self.rss.append((now, self.server.rss_bytes()))
                self.cpu.append((now, self.server.cpu_seconds()))
                next_sample = now + 0.25


def _call_options(stack: Stack, n: int, seconds: float, script: CallerScript) -> list[CallOptions]:
    return [
        CallOptions(
            base_url=stack.base_url,
            auth_token=stack.auth_token,
            audio=script(seconds, i),
            listen_seconds=0.0,  # hang up when the script ends
            max_seconds=seconds + 5,
        )
        for i in range(n)
    ]


def ramp_seconds(calls: int, duration: float) -> float:
    """Until every call is set up and talking: calls start 20 ms apart, and each one's
    webhook, Live connect and greeting take about a second. Capped to half the run."""
    return min(1.5 + 0.02 * calls, duration / 2)


async def ramp_timings(stack: Stack, seconds: float) -> dict[str, list[float]]:
    """The raw timings of the ramp-up, taken (and reset) once it is over."""
    await asyncio.sleep(seconds)
    return await fetch_timings(stack, reset=True)


def merge(*parts: dict[str, list[float]]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for part in parts:
        for name, samples in part.items():
            merged.setdefault(name, []).extend(samples)
    return merged


async def run_calls(
    stack: Stack, n: int, seconds: float, script: CallerScript
) -> tuple[list[CallReport], Sampler]:
    sampler = Sampler(stack.server)
    task = asyncio.create_task(sampler.run())
    try:
        reports = await simulate_calls(_call_options(stack, n, seconds, script))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return reports, sampler


# --- CPU micro-timings in this process ---------------------------------------------------


def _per_call_second(fn: Any, repeat: int) -> float:
    """ms of CPU for one call-second of `fn` (50 frames), median over `repeat` runs."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(50):
            fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def codec_costs(repeat: int = 40) -> dict[str, float]:
    """Codec and message-path CPU per call-second, both directions (20 ms frames)."""
    t = np.arange(480) / 24000
    pcm24 = (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    ulaw = pcm16_to_ulaw(pcm24[::3])
    up, down = inbound_resampler(), outbound_resampler()
    sid = "MZ" + "0" * 32
    raw = inbound_media_message(sid, 9, chunk=7, timestamp_ms=140, payload=ulaw)

    def inbound() -> None:
        up.process(ulaw_to_pcm16(ulaw)).tobytes()

    def outbound() -> None:
        pcm16_to_ulaw(down.process(pcm24))

    def messages() -> None:
        parse_message(raw)
        media_message(sid, ulaw)

    codec_in = _per_call_second(inbound, repeat)
    codec_out = _per_call_second(outbound, repeat)
    return {
        "codec_in_ms": codec_in,
        "codec_out_ms": codec_out,
        "codec_ms": codec_in + codec_out,
        "twilio_json_ms": _per_call_second(messages, repeat),
    }
