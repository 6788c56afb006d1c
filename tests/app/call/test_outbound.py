"""`Outbound`, the writer of the Twilio socket: waking rules that pacing depends on."""

from __future__ import annotations

import asyncio

import numpy as np
import structlog

from app.call.info import CallStats
from app.call.outbound import Outbound
from app.call.playout import FRAME_SAMPLES, Playout
from app.call.policy import CallPolicy
from telephony.messages import OutboundMedia, parse_outbound


class Sink:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


def writer(playout: Playout, sink: Sink) -> Outbound:
    return Outbound(
        sink,
        "MZ" + "0" * 32,
        playout,
        lambda: 0,  # the call clock stands still: only what is due now goes out
        policy=CallPolicy(goodbye_grace_s=1.5, fallback_s=10.0, input_pause_s=1.0),
        stats=CallStats(),
        recorder=None,
        metrics=None,
        flush_caller=lambda: None,
        wake_watchdog=lambda: None,
        log=structlog.get_logger(),
    )


async def test_audio_queued_before_the_writer_starts_goes_out_on_its_first_pass() -> None:
    """A pre-warmed greeting reaches the bridge before the writer task has run once: the
    wake-up it gets then must not be lost (it was, and the greeting stopped at 160 ms)."""
    playout, sink = Playout(), Sink()
    outbound = writer(playout, sink)
    playout.push(np.ones(2 * FRAME_SAMPLES, np.int16))
    outbound.wake_if_idle()  # as the Live pump does for audio that pacing holds
    task = asyncio.create_task(outbound.run())
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        media = [m for m in map(parse_outbound, sink.sent) if isinstance(m, OutboundMedia)]
        assert sum(len(m.payload) for m in media) == 2 * FRAME_SAMPLES
        assert not playout.has_frame()
    finally:
        task.cancel()


async def test_a_writer_asleep_on_its_pacing_timer_is_not_woken_early() -> None:
    playout, sink = Playout(max_lead_samples=10 * FRAME_SAMPLES), Sink()
    outbound = writer(playout, sink)
    playout.push(np.ones(11 * FRAME_SAMPLES, np.int16))  # one frame more than the cap
    outbound.wake_if_idle()
    task = asyncio.create_task(outbound.run())
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(sink.sent) == 1  # ten frames; the eleventh waits for low water
        outbound.wake_if_idle()
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(sink.sent) == 1 and playout.has_frame()
    finally:
        task.cancel()
