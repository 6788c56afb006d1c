"""The streaming resamplers against the audio bar, measured on synthetic signals.

The bar (the project's audio notes): delay <= 2 ms, alias/image rejection >= 70 dB,
passband flat within 0.5 dB to 3.4 kHz, output independent of chunking, clip
before casting. Speed is not asserted here; ``app.dev.codec_report`` reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import signal

from telephony.resample import (
    StreamingResampler,
    inbound_resampler,
    kaiser_lowpass,
    outbound_resampler,
)

Factory = Callable[[], StreamingResampler]
DIRECTIONS = [
    pytest.param(inbound_resampler, 8000, 16000, id="inbound-8k-16k"),
    pytest.param(outbound_resampler, 24000, 8000, id="outbound-24k-8k"),
]


def tone(fs: int, freq: float, seconds: float = 1.25, dbfs: float = -1.0) -> NDArray[np.int16]:
    t = np.arange(round(fs * seconds)) / fs
    return np.rint(32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def noise(fs: int, seconds: float, seed: int = 1) -> NDArray[np.int16]:
    """Gaussian noise band-limited to 100-3400 Hz at about -18 dBFS."""
    rng = np.random.default_rng(seed)
    band = signal.firwin(501, [100, 3400], pass_zero=False, fs=fs)
    x = signal.fftconvolve(rng.standard_normal(round(fs * seconds) + 500), band, "valid")
    return np.rint(x * 4125 / np.sqrt(np.mean(x**2))).astype(np.int16)


def stream(r: StreamingResampler, x: NDArray[np.int16], sizes: Iterable[int]) -> NDArray[np.int16]:
    parts, start = [], 0
    for size in sizes:
        if start >= x.size:
            break
        parts.append(r.process(x[start : start + size]))
        start += size
    assert start >= x.size, "chunk sizes did not cover the input"
    return np.concatenate(parts)


def frames(fs: int) -> Iterable[int]:
    while True:
        yield fs // 50  # 20 ms


def random_sizes(low: int, high: int, seed: int) -> Iterable[int]:
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(low, high + 1))


def amplitude(y: NDArray[np.int16], fs: int, freq: float) -> float:
    """Amplitude at an integer-Hz ``freq`` over the last second (bin-centred, Hann)."""
    seg = y[-fs:].astype(np.float64)
    window = np.hanning(seg.size)
    phasor = np.exp(-2j * np.pi * freq * np.arange(seg.size) / fs)
    return float(2 * abs(np.dot(seg * window, phasor)) / window.sum())


def db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, 1e-12)))


def through(factory: Factory, fs_in: int, x: NDArray[np.int16]) -> NDArray[np.int16]:
    return stream(factory(), x, frames(fs_in))


# --- delay -----------------------------------------------------------------------------


@pytest.mark.parametrize(("factory", "fs_in", "fs_out"), DIRECTIONS)
def test_delay_is_at_most_2_ms(factory: Factory, fs_in: int, fs_out: int) -> None:
    at = fs_in // 100  # an impulse 10 ms in
    x = np.zeros(fs_in // 10, dtype=np.int16)
    x[at] = 16384
    y = through(factory, fs_in, x)
    measured_ms = 1000 * (int(np.argmax(y)) / fs_out - at / fs_in)
    assert 0 <= measured_ms <= 2.0
    assert factory().delay_ms == pytest.approx(measured_ms, abs=1000 / fs_out)


@pytest.mark.parametrize(("factory", "fs_in", "fs_out"), DIRECTIONS)
def test_noise_comes_out_delayed_by_the_stated_delay(
    factory: Factory, fs_in: int, fs_out: int
) -> None:
    x = noise(fs_in, 1.0)
    y = through(factory, fs_in, x).astype(np.float64)
    up, down = fs_out // np.gcd(fs_in, fs_out), fs_in // np.gcd(fs_in, fs_out)
    ideal = signal.resample_poly(x.astype(np.float64), up, down)  # zero-delay reference
    lags = range(round(0.004 * fs_out))
    n = fs_out // 2
    corr = [np.dot(y[lag : lag + n], ideal[:n]) for lag in lags]
    best = int(np.argmax(corr))
    assert best == round(factory().delay_samples_out)
    assert 1000 * best / fs_out <= 2.0


# --- passband and rejection -----------------------------------------------------------


@pytest.mark.parametrize(("factory", "fs_in", "fs_out"), DIRECTIONS)
def test_passband_flat_within_half_db_to_3400_hz(factory: Factory, fs_in: int, fs_out: int) -> None:
    for freq in range(100, 3401, 100):
        x = tone(fs_in, freq)
        gain = db(amplitude(through(factory, fs_in, x), fs_out, freq) / amplitude(x, fs_in, freq))
        assert abs(gain) <= 0.5, f"{freq} Hz: {gain:+.2f} dB"


def test_image_of_1khz_at_7khz_is_70_db_down() -> None:
    x = tone(8000, 1000)
    y = through(inbound_resampler, 8000, x)
    assert db(amplitude(y, 16000, 7000) / amplitude(x, 8000, 1000)) <= -70


@pytest.mark.parametrize("freq", range(100, 3401, 100))
def test_images_of_the_telephone_band_are_70_db_down(freq: int) -> None:
    x = tone(8000, freq)
    y = through(inbound_resampler, 8000, x)
    assert db(amplitude(y, 16000, 8000 - freq) / amplitude(x, 8000, freq)) <= -70


def test_5khz_alias_into_8khz_output_is_70_db_down() -> None:
    x = tone(24000, 5000)
    y = through(outbound_resampler, 24000, x)
    assert db(amplitude(y, 8000, 3000) / amplitude(x, 24000, 5000)) <= -70


@pytest.mark.parametrize("freq", [f for f in range(4600, 11401, 200) if f != 8000])
def test_aliases_into_the_telephone_band_are_70_db_down(freq: int) -> None:
    x = tone(24000, freq)
    y = through(outbound_resampler, 24000, x)
    alias = abs(freq - 8000)
    assert db(amplitude(y, 8000, alias) / amplitude(x, 24000, freq)) <= -70


def test_sweep_above_4600_hz_is_70_db_down_after_decimation() -> None:
    t = np.arange(24000 * 2) / 24000
    # Tapered ends: an abrupt start would be a click with energy in the passband.
    sweep = signal.chirp(t, f0=4600, t1=t[-1], f1=11400) * signal.windows.tukey(t.size, 0.1)
    x = np.rint(29000 * sweep).astype(np.int16)
    y = through(outbound_resampler, 24000, x).astype(np.float64)
    assert db(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x.astype(np.float64) ** 2))) <= -70


def test_sweep_images_above_4600_hz_are_70_db_down() -> None:
    t = np.arange(8000 * 2) / 8000
    sweep = signal.chirp(t, f0=100, t1=t[-1], f1=3400) * signal.windows.tukey(t.size, 0.1)
    x = np.rint(29000 * sweep).astype(np.int16)
    y = through(inbound_resampler, 8000, x).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / 16000)
    image_energy = spectrum[freqs >= 4600].sum() / spectrum[freqs <= 3400].sum()
    assert 10 * np.log10(image_energy) <= -70


# --- streaming ------------------------------------------------------------------------


@pytest.mark.parametrize(("factory", "fs_in", "fs_out"), DIRECTIONS)
def test_output_is_identical_whatever_the_chunking(
    factory: Factory, fs_in: int, fs_out: int
) -> None:
    x = noise(fs_in, 3.0)
    one_shot = factory().process(x)
    assert np.array_equal(stream(factory(), x, frames(fs_in)), one_shot)
    assert np.array_equal(stream(factory(), x, random_sizes(960, 9600, seed=2)), one_shot)
    # Tiny and odd sizes too: for 24k->8k most are not multiples of three.
    assert np.array_equal(stream(factory(), x, random_sizes(0, 7, seed=3)), one_shot)


@pytest.mark.parametrize(("factory", "fs_in", "fs_out"), DIRECTIONS)
def test_output_length_is_exact_for_every_chunk(factory: Factory, fs_in: int, fs_out: int) -> None:
    r = factory()
    fed = produced = 0
    for size in [1, 2, 3, 4, 160, 479, 480, 481, 0, 5, 7, 1000]:
        produced += r.process(np.zeros(size, dtype=np.int16)).size
        fed += size
        # Output n sits at input time n*down/up and is due once that input has arrived:
        # 8k->16k gives two per input, 24k->8k one per started group of three.
        assert produced == (fed * r.up - 1) // r.down + 1


@pytest.mark.parametrize(("factory", "fs_in", "fs_out"), DIRECTIONS)
def test_reset_returns_to_the_initial_state(factory: Factory, fs_in: int, fs_out: int) -> None:
    x = noise(fs_in, 0.5, seed=4)
    r = factory()
    r.process(noise(fs_in, 0.1, seed=5)[:1237])  # leaves history and a partial phase
    r.reset()
    assert np.array_equal(r.process(x), factory().process(x))


@pytest.mark.parametrize(("factory", "fs_in", "fs_out"), DIRECTIONS)
def test_full_scale_overshoot_is_clipped_not_wrapped(
    factory: Factory, fs_in: int, fs_out: int
) -> None:
    # A full-scale square wave rings (Gibbs) past int16 range after low-pass filtering.
    period = fs_in // 500
    x = np.where(np.arange(fs_in // 5) % period < period // 2, 32767, -32768).astype(np.int16)
    r = factory()
    y = stream(r, x, frames(fs_in))
    ideal = signal.upfirdn(r.taps * r.up, x.astype(np.float64), r.up, r.down)[: y.size]
    assert ideal.max() > 32767 and ideal.min() < -32768  # the test really overshoots
    assert np.max(np.abs(y - np.clip(ideal, -32768, 32767))) <= 1


def test_matches_direct_polyphase_definition_for_other_ratios() -> None:
    rng = np.random.default_rng(6)
    x = rng.integers(-20000, 20000, size=3001).astype(np.int16)
    for up, down in [(3, 2), (2, 3), (5, 4), (1, 2), (4, 1)]:
        taps = kaiser_lowpass(47, 0.4 * 8000 / max(up, down), 7.0, fs=8000.0)
        r = StreamingResampler(up, down, taps, fs_in=8000)
        y = stream(r, x, random_sizes(0, 50, seed=up * 10 + down))
        ideal = signal.upfirdn(taps * up, x.astype(np.float64), up, down)
        # Outputs come in blocks of `up`, all due once the block's newest input is in.
        assert y.size == ((x.size - 1 - (up - 1) * down // up) // down + 1) * up
        assert np.max(np.abs(y - np.rint(ideal[: y.size]))) <= 1, (up, down)


def test_rejects_ratios_that_are_not_reduced() -> None:
    with pytest.raises(ValueError):
        StreamingResampler(2, 4, kaiser_lowpass(31, 1000, 6.0, fs=16000.0), fs_in=8000)


def test_empty_chunk_gives_empty_int16_output() -> None:
    out = outbound_resampler().process(np.empty(0, dtype=np.int16))
    assert out.dtype == np.int16 and out.size == 0


# --- bit-identity with the original formulation ----------------------------------------


class DotProductResampler:
    """The first implementation, kept as the reference that process() must match bit for bit.

    One row per block of ``up`` outputs: the block's window of inputs (a strided view,
    which np.dot copies) times the ``(window, up)`` block matrix. StreamingResampler
    now computes the same sums grouped differently; with integer coefficients every
    partial sum is exact, so any grouping must give identical samples.
    """

    def __init__(self, up: int, down: int, taps: NDArray[np.float64]) -> None:
        self.up, self.down = up, down
        per_phase = -(-taps.size // up)
        padded = np.zeros(per_phase * up)
        padded[: taps.size] = taps
        coefficients = np.rint(padded * up * 2.0**24)
        lead = ((up - 1) * down) // up
        self.window = per_phase + lead
        self.matrix = np.zeros((self.window, up))
        for i in range(up):
            newest = self.window - 1 - (lead - (i * down) // up)
            self.matrix[newest - np.arange(per_phase), i] = coefficients[(i * down) % up :: up]
        self.matrix *= 2.0**-24
        self.history_len = (taps.size + up - 1) // up - 1
        self.reset()

    def reset(self) -> None:
        self.held = np.zeros(self.history_len)

    def process(self, samples: NDArray[np.int16]) -> NDArray[np.int16]:
        buffer = np.concatenate([self.held, samples.astype(np.float64)])
        blocks = (buffer.size - self.window) // self.down + 1
        if blocks <= 0:
            self.held = buffer
            return np.empty(0, dtype=np.int16)
        windows = np.lib.stride_tricks.as_strided(
            buffer, (blocks, self.window), (self.down * 8, 8), writeable=False
        )
        out = np.dot(windows, self.matrix).ravel()
        self.held = buffer[blocks * self.down :].copy()
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


RATIOS = [
    pytest.param(inbound_resampler, id="inbound-8k-16k"),
    pytest.param(outbound_resampler, id="outbound-24k-8k"),
    *(
        pytest.param(
            lambda up=up, down=down: StreamingResampler(
                up, down, kaiser_lowpass(47, 0.4 * 8000 / max(up, down), 7.0, fs=8000.0), fs_in=8000
            ),
            id=f"{up}-{down}",
        )
        for up, down in [(3, 2), (2, 3), (5, 4), (1, 2), (4, 1), (1, 1)]
    ),
]


def _torture_input(rng: np.random.Generator, n: int) -> NDArray[np.int16]:
    """Full-scale noise, full-scale square waves (overshoot that must saturate) or silence."""
    kind = rng.integers(3)
    if kind == 0:
        return rng.integers(-32768, 32768, size=n).astype(np.int16)
    if kind == 1:
        period = int(rng.integers(2, 40))
        return np.where(np.arange(n) % period < period // 2, 32767, -32768).astype(np.int16)
    return np.zeros(n, dtype=np.int16)


@pytest.mark.parametrize("factory", RATIOS)
def test_bit_identical_to_the_dot_product_formulation(factory: Factory) -> None:
    r = factory()
    reference = DotProductResampler(r.up, r.down, r.taps)
    rng = np.random.default_rng(r.up * 100 + r.down)
    saturated = 0
    for step in range(400):
        # Mostly frame-sized chunks, some empty or tiny, some larger than the buffer.
        size = int(rng.choice([0, 1, 2, 3, 5, 160, 479, 480, 481, 1440, 4801]))
        if step % 61 == 60:
            size = 20000  # grows the buffer
        x = _torture_input(rng, size)
        got, want = r.process(x), reference.process(x)
        assert got.dtype == np.int16
        assert np.array_equal(got, want), (step, size)
        saturated += int(np.sum(np.abs(got.astype(np.int32)) >= 32767))
        if rng.random() < 0.05:
            r.reset()
            reference.reset()
    assert saturated > 0  # the overshooting inputs really hit the rails


def test_reference_matches_the_definition() -> None:
    # Pin the reference down independently: upfirdn with the integer-rounded taps.
    rng = np.random.default_rng(7)
    x = rng.integers(-32768, 32768, size=4000).astype(np.int16)
    for factory in (inbound_resampler, outbound_resampler):
        r = factory()
        y = DotProductResampler(r.up, r.down, r.taps).process(x)
        rounded = np.rint(r.taps * r.up * 2.0**24) * 2.0**-24
        ideal = signal.upfirdn(rounded, x.astype(np.float64), r.up, r.down)[: y.size]
        assert np.array_equal(y, np.clip(np.rint(ideal), -32768, 32767).astype(np.int16))


def test_outputs_for_says_what_process_will_return() -> None:
    rng = np.random.default_rng(7)
    for make in (inbound_resampler, outbound_resampler):
        resampler = make()
        for size in rng.integers(0, 700, 200):
            expected = resampler.outputs_for(int(size))
            out = resampler.process(rng.integers(-2000, 2000, int(size)).astype(np.int16))
            assert out.size == expected
