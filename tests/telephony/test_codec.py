"""The per-call transcoders: bytes in, bytes out, any chunking, reset on barge-in."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from telephony.codec import InboundTranscoder, OutboundTranscoder
from telephony.mulaw import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16
from telephony.resample import inbound_resampler, outbound_resampler


def tone(fs: int, freq: float, seconds: float, dbfs: float = -6.0) -> NDArray[np.int16]:
    t = np.arange(round(fs * seconds)) / fs
    return np.rint(32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def amplitude(y: NDArray[np.int16], fs: int, freq: float) -> float:
    seg = y[-fs:].astype(np.float64)
    window = np.hanning(seg.size)
    phasor = np.exp(-2j * np.pi * freq * np.arange(seg.size) / fs)
    return float(2 * abs(np.dot(seg * window, phasor)) / window.sum())


def pieces(data: bytes, seed: int, low: int, high: int) -> Iterator[bytes]:
    rng = np.random.default_rng(seed)
    start = 0
    while start < len(data):
        size = int(rng.integers(low, high + 1))
        yield data[start : start + size]
        start += size


def pcm_bytes(samples: NDArray[np.int16]) -> bytes:
    return samples.astype("<i2").tobytes()


def test_inbound_frame_is_twice_as_many_le_samples() -> None:
    ulaw = pcm16_to_ulaw(tone(8000, 440, 0.02))
    out = InboundTranscoder().process(ulaw)
    assert len(out) == 160 * 2 * 2  # 320 samples at 16 kHz, two bytes each
    expected = inbound_resampler().process(ulaw_to_pcm16(ulaw))
    assert np.array_equal(np.frombuffer(out, dtype="<i2"), expected)


def test_inbound_silence_stays_silent() -> None:
    out = InboundTranscoder().process(bytes([ULAW_SILENCE]) * 160)
    assert out == bytes(640)


def test_inbound_output_is_independent_of_framing() -> None:
    ulaw = pcm16_to_ulaw(tone(8000, 1000, 1.0))
    one_shot = InboundTranscoder().process(ulaw)
    framed = InboundTranscoder()
    assert b"".join(framed.process(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160)) == one_shot
    ragged = InboundTranscoder()
    assert b"".join(ragged.process(p) for p in pieces(ulaw, 1, 0, 333)) == one_shot


def test_inbound_tone_keeps_its_level() -> None:
    x = tone(8000, 1000, 1.25)
    y = np.frombuffer(InboundTranscoder().process(pcm16_to_ulaw(x)), dtype="<i2")
    gain_db = 20 * np.log10(amplitude(y, 16000, 1000) / amplitude(x, 8000, 1000))
    assert abs(gain_db) < 0.5  # mu-law quantisation plus the filter's passband


def test_outbound_handles_any_byte_count_including_odd() -> None:
    pcm = pcm_bytes(tone(24000, 1000, 1.0))
    one_shot = OutboundTranscoder().process(pcm)
    assert len(one_shot) == 24000 // 3
    ragged = OutboundTranscoder()
    # Sizes 0-9 bytes: odd counts split samples, and most counts split groups of three.
    assert b"".join(ragged.process(p) for p in pieces(pcm, 2, 0, 9)) == one_shot
    large = OutboundTranscoder()
    assert b"".join(large.process(p) for p in pieces(pcm, 3, 1919, 19201)) == one_shot


def test_outbound_matches_resampler_then_mulaw() -> None:
    x = tone(24000, 700, 0.5)
    expected = pcm16_to_ulaw(outbound_resampler().process(x))
    assert OutboundTranscoder().process(pcm_bytes(x)) == expected


def test_outbound_output_count_tracks_input_samples() -> None:
    t = OutboundTranscoder()
    sizes = [1, 1, 2, 3, 5, 960, 961, 7]  # bytes
    produced = sum(len(t.process(bytes(n))) for n in sizes)
    samples = sum(sizes) // 2
    assert produced == (samples - 1) // 3 + 1  # one output per started group of three


def test_outbound_rejects_a_5khz_tone() -> None:
    x = tone(24000, 5000, 1.25, dbfs=-1.0)
    y = ulaw_to_pcm16(OutboundTranscoder().process(pcm_bytes(x)))
    # After mu-law's coarse steps near zero the 3 kHz alias is still far below the tone.
    assert 20 * np.log10(max(amplitude(y, 8000, 3000), 1e-9) / amplitude(x, 24000, 5000)) < -60


def test_outbound_reset_drops_the_odd_byte_and_history() -> None:
    pcm = pcm_bytes(tone(24000, 1000, 0.2))
    t = OutboundTranscoder()
    t.process(pcm[:1001])  # odd: a stray byte and a partial group remain
    t.reset()
    assert t.process(pcm) == OutboundTranscoder().process(pcm)


def test_inbound_reset_drops_history() -> None:
    ulaw = pcm16_to_ulaw(tone(8000, 1000, 0.2))
    t = InboundTranscoder()
    t.process(ulaw[:777])
    t.reset()
    assert t.process(ulaw) == InboundTranscoder().process(ulaw)


def test_empty_input_gives_empty_output() -> None:
    assert InboundTranscoder().process(b"") == b""
    assert OutboundTranscoder().process(b"") == b""
    assert OutboundTranscoder().process(b"\x01") == b""
