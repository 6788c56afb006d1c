"""The fake model talking for the whole session (`Scenario.continuous`), for CPU benchmarks.

Real time from the first client audio, `lead_ms` ahead: chunk k is due at
start + k * chunk - lead, on an absolute schedule so sleep overshoot does not accumulate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.dev.fakes.live import wire
from app.dev.fakes.live.clips import clip_text, load_clip
from app.dev.fakes.live.scenario import ContinuousConfig

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def stream_forever(send: Send, config: ContinuousConfig, on_turn: Callable[[], None]) -> None:
    """Send `config.clip` over and over in `chunk_ms` messages until cancelled."""
    pcm = load_clip(config.clip, wire.OUTPUT_RATE)
    step = wire.OUTPUT_RATE * config.chunk_ms // 1000
    # Whole chunks only: every message carries exactly chunk_ms of audio.
    chunks = [pcm[i : i + step].tobytes() for i in range(0, len(pcm) - step + 1, step)]
    if not chunks:
        raise ValueError(f"clip {config.clip!r} is shorter than one {config.chunk_ms} ms chunk")
    text = clip_text(config.clip) or None
    seconds = config.chunk_ms / 1000
    start = time.monotonic() - config.lead_ms / 1000
    sent = 0
    while True:
        for i, chunk in enumerate(chunks):
            delay = start + sent * seconds - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            last = i == len(chunks) - 1
            await send(
                wire.server_content(
                    audio=chunk,
                    output_text=text if last else None,
                    generation_complete=last,
                    turn_complete=last,
                )
            )
            sent += 1
        on_turn()
