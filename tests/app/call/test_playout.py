"""Pacing arithmetic of `Playout`: a cap on the lead, frames leaving in bursts."""

from __future__ import annotations

import numpy as np

from app.call.playout import FRAME_SAMPLES, Playout
from telephony.resample import outbound_resampler


def queued(frames: int) -> Playout:
    playout = Playout(max_lead_samples=10 * FRAME_SAMPLES, burst_frames=3)
    playout.push(np.arange(frames * FRAME_SAMPLES, dtype=np.int16))
    return playout


def test_everything_that_fits_goes_at_once_as_one_block() -> None:
    playout = queued(14)
    block = playout.next_burst(now=0)
    assert block is not None
    assert block.start_sample == 0
    assert block.pcm.size == 10 * FRAME_SAMPLES  # up to the cap, not beyond
    assert playout.next_burst(now=0) is None
    assert playout.queued_samples == 4 * FRAME_SAMPLES


def test_at_the_cap_the_sender_waits_for_a_burst_not_a_frame() -> None:
    playout = queued(14)
    playout.next_burst(now=0)
    # One frame would fit after 20 ms; a burst of three after 60 ms.
    assert playout.wait_samples(now=0) == 3 * FRAME_SAMPLES
    later = 3 * FRAME_SAMPLES
    assert playout.wait_samples(now=later) == 0
    block = playout.next_burst(now=later)
    assert block is not None
    assert block.pcm.size == 3 * FRAME_SAMPLES
    assert block.start_sample == 10 * FRAME_SAMPLES  # straight after what was sent


def test_fewer_queued_frames_than_a_burst_wait_for_low_water() -> None:
    playout = queued(11)
    playout.next_burst(now=0)
    # One frame would fit after 20 ms, but Twilio still holds 200 ms: the lone frame
    # waits until only low water is left to play, then goes, still in time.
    assert playout.wait_samples(now=0) == 10 * FRAME_SAMPLES - playout.low_water_samples
    assert playout.next_burst(now=FRAME_SAMPLES) is None
    assert not playout.ready(now=FRAME_SAMPLES)
    at_low_water = 10 * FRAME_SAMPLES - playout.low_water_samples
    assert playout.ready(now=at_low_water)
    block = playout.next_burst(now=at_low_water)
    assert block is not None
    assert block.start_sample == 10 * FRAME_SAMPLES  # plays straight on: no gap


def test_with_nothing_playing_a_single_frame_goes_at_once() -> None:
    playout = queued(1)
    assert playout.ready(now=0)
    block = playout.next_burst(now=0)
    assert block is not None and block.pcm.size == FRAME_SAMPLES


def test_real_time_audio_leaves_in_bursts_and_never_runs_dry() -> None:
    """A model streaming 20 ms chunks at real time, 100 ms ahead (the bench's continuous
    scenario): after the first message, frames leave three at a time with a 40 ms low
    water, and the lead never falls below it."""
    playout = Playout(
        max_lead_samples=10 * FRAME_SAMPLES, burst_frames=3, low_water_samples=2 * FRAME_SAMPLES
    )
    playout.push(np.zeros(5 * FRAME_SAMPLES, np.int16))  # the model's 100 ms lead
    sizes, leads = [], []
    for tick in range(60):
        now = tick * FRAME_SAMPLES
        if tick:
            playout.push(np.zeros(FRAME_SAMPLES, np.int16))
        while playout.ready(now):
            block = playout.next_burst(now)
            assert block is not None
            sizes.append(block.pcm.size // FRAME_SAMPLES)
        leads.append(playout.playing_until() - now)
    assert sizes[0] == 5
    assert sizes[1:] and set(sizes[1:]) == {3}
    assert min(leads[1:]) >= playout.low_water_samples


def test_audio_stays_in_order_and_whole() -> None:
    playout = queued(25)
    now, out = 0, []
    while playout.has_frame():
        now += playout.wait_samples(now)
        block = playout.next_burst(now)
        assert block is not None
        assert block.pcm.size % FRAME_SAMPLES == 0
        assert block.start_sample - now <= 10 * FRAME_SAMPLES  # never past the cap
        out.append(block.pcm)
    assert np.array_equal(np.concatenate(out), np.arange(25 * FRAME_SAMPLES, dtype=np.int16))


def test_an_idle_line_restarts_playback_now() -> None:
    playout = queued(2)
    playout.next_burst(now=0)
    playout.push(np.zeros(FRAME_SAMPLES, np.int16))
    block = playout.next_burst(now=10_000)  # long after the last audio ended
    assert block is not None
    assert block.start_sample == 10_000


def test_model_audio_is_resampled_a_burst_at_a_time_into_the_same_audio() -> None:
    """Live chunks queue at 24 kHz and are resampled only as their burst goes out: what
    leaves is sample for sample what resampling every chunk on arrival gives."""
    rng = np.random.default_rng(3)
    chunks = [rng.integers(-8000, 8000, 480).astype(np.int16) for _ in range(40)]
    playout = Playout(max_lead_samples=10 * FRAME_SAMPLES, resampler=outbound_resampler())
    sent, bursts, now = [], 0, 0
    for k, chunk in enumerate(chunks):
        playout.push_source(chunk)
        assert playout.queued_samples % FRAME_SAMPLES == 0  # 480 in, 160 out each
        if k < 4:
            continue  # the model starts 100 ms ahead, then streams at real time
        while playout.ready(now):
            burst = playout.next_burst(now)
            assert burst is not None
            sent.append(burst.pcm)
            bursts += 1
        now += FRAME_SAMPLES
    playout.flush_partial()
    while playout.has_frame():
        now += playout.wait_samples(now)
        burst = playout.next_burst(now)
        assert burst is not None
        sent.append(burst.pcm)
    reference = outbound_resampler()
    expected = np.concatenate([reference.process(c) for c in chunks])
    assert np.array_equal(np.concatenate(sent), expected)
    assert bursts < len(chunks) / 2  # several chunks per resampler call and message


def test_clear_drops_unresampled_audio_and_the_resamplers_history() -> None:
    playout = Playout(resampler=outbound_resampler())
    playout.push_source(np.full(480, 9000, np.int16))
    assert playout.has_frame()
    playout.clear(now=0)
    assert playout.queued_samples == 0 and not playout.has_frame()
    silence = np.zeros(480, np.int16)
    playout.push_source(silence)
    burst = playout.next_burst(now=0)
    assert burst is not None
    assert not burst.pcm.any()  # no ringing of the dropped audio
