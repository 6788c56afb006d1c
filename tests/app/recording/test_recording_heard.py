"""The recording of a real call is what the caller heard and said, barge-in included.

A simulated caller (Twilio's playback semantics) talks over the greeting; the server's
stereo WAV is compared sample by sample with what the caller heard (agent channel) and
sent (caller channel).
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from app.assets import load_clip_8k
from app.dev.fakes.live.scenario import Scenario
from app.dev.fakes.twilio_caller import CallOptions, simulate_call
from app.dev.local_stack import local_stack

TOLERANCE = 160  # 20 ms at 8 kHz: the bar for "exact to what was heard"


def read_stereo(path: Path) -> tuple[NDArray[np.int16], NDArray[np.int16]]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    return frames[:, 0].copy(), frames[:, 1].copy()


def aligned(
    reference: NDArray[np.int16], other: NDArray[np.int16], start: int, stop: int, span: int
) -> tuple[int, float]:
    """Best lag (samples, within +-span) of `other` against `reference[start:stop]`, and
    the SNR there: how exactly the segment was placed and how faithfully it was kept."""
    ref = reference[start:stop].astype(float)
    best_lag, best_score = 0, -np.inf
    for lag in range(-span, span + 1):
        lo, hi = start + lag, stop + lag
        if lo < 0 or hi > other.size:
            continue
        score = float(ref @ other[lo:hi].astype(float))
        if score > best_score:
            best_lag, best_score = lag, score
    candidate = other[start + best_lag : stop + best_lag].astype(float)
    noise = ref - candidate
    return best_lag, float(10 * np.log10((ref @ ref + 1.0) / (noise @ noise + 1.0)))


def segments(signal: NDArray[np.int16], gap: int = 4000) -> list[tuple[int, int]]:
    """(start, stop) of the stretches with sound, split at >= `gap` samples of quiet."""
    loud = np.flatnonzero(np.abs(signal) > 200)
    if loud.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(loud) >= gap)
    starts = np.concatenate(([loud[0]], loud[breaks + 1]))
    stops = np.concatenate((loud[breaks] + 1, [loud[-1] + 1]))
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


async def test_recording_matches_what_was_heard_across_a_barge_in(tmp_path: Path) -> None:
    scenario = Scenario.model_validate(
        {"greeting": {"clip": "greeting"}, "default_reply": {"clip": "reply_generic"}}
    )
    silence = np.zeros(int(1.5 * 8000), np.int16)
    caller = np.concatenate([silence, load_clip_8k("caller_goodbye")])
    async with local_stack(scenario, recordings_dir=tmp_path, tools="end_call") as stack:
        report = await simulate_call(
            CallOptions(
                base_url=stack.base_url,
                auth_token=stack.auth_token,
                audio=caller,
                listen_seconds=4.0,
                max_seconds=30.0,
            )
        )
        record_path = tmp_path / f"{report.call_sid}.json"
        for _ in range(100):
            if record_path.is_file():
                break
            await asyncio.sleep(0.05)
    assert report.error is None
    assert report.clears >= 1, "the caller talked over the greeting: expected a clear"
    record = json.loads(record_path.read_text())
    assert record["interruptions"], record

    caller_ch, agent_ch = read_stereo(tmp_path / f"{report.call_sid}.wav")
    heard, sent = report.heard, report.sent
    # One timeline: the file is as long as the call the caller experienced.
    assert abs(agent_ch.size - heard.size) <= 2 * TOLERANCE

    clear_at = int(report.clear_times_ms[0] * 8)
    # The caller channel is what the caller sent, and the agent channel what the caller
    # heard: each stretch of speech placed within 20 ms and kept intact (G.711 ~ 37 dB).
    for reference, channel, cut_by_clear in ((sent, caller_ch, False), (heard, agent_ch, True)):
        stretches = segments(reference)
        assert stretches
        for start, stop in stretches:
            # Compare agent audio up to the clear for a stretch it cut; the cut is checked
            # below. Caller audio is never cut: truncating it there left a ~20 ms window
            # that cross-correlation could not place (a false peak 54 ms off, ~1 run in 10).
            cut = cut_by_clear and start < clear_at < stop
            end = clear_at - TOLERANCE if cut else stop
            lag, snr = aligned(reference, channel, start, end, 3 * TOLERANCE)
            # The simulator starts playing received audio at its next 20 ms tick, so
            # "heard" itself is quantised to a tick: allow the bar plus one tick.
            assert abs(lag) <= 2 * TOLERANCE, (start, lag)
            assert snr > 30, (start, snr)

    # The greeting was cut where the caller stopped hearing it. The simulator applies a
    # clear at its next 20 ms playback tick, so the two cuts may differ by a tick more.
    heard_cut = max(stop for start, stop in segments(heard) if start < clear_at)
    recorded_cut = max(stop for start, stop in segments(agent_ch) if start < clear_at)
    assert abs(heard_cut - recorded_cut) <= 2 * TOLERANCE, (heard_cut, recorded_cut)

    # Nothing the clear discarded is in the file: where the caller heard silence after
    # the clear, the recording is silent too.
    quiet_heard = np.abs(heard[clear_at + TOLERANCE : clear_at + 8000]) < 200
    window = agent_ch[clear_at + 2 * TOLERANCE : clear_at + 8000 - TOLERANCE]
    assert quiet_heard.mean() > 0.9  # the greeting was cut: the caller heard silence
    assert float(np.abs(window).max(initial=0)) < 500
