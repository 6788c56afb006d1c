"""Measure the codec on this machine: CPU cost, delay, rejection, flatness, SNR.

Run as ``python -m app.dev.codec_report [--json]`` (or ``voicebot codec-report``).
Every figure printed is measured on synthetic signals when it runs; nothing is
quoted from elsewhere. Speed is reported here, never asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from telephony.codec import InboundTranscoder, OutboundTranscoder
from telephony.mulaw import pcm16_to_ulaw
from telephony.resample import StreamingResampler, inbound_resampler, outbound_resampler

__all__ = ["main", "measure"]

_FRAME_S = 0.020
_FRAMES_PER_SECOND = 50
_PASSBAND_HZ = 3400
_STOPBAND_HZ = 4600
# Reference for SNR: one-shot polyphase resampling with a long Kaiser filter.
_REFERENCE_TAPS = 1601
_REFERENCE_BETA = 12.0


@dataclass(frozen=True)
class _Direction:
    name: str
    make: Callable[[], StreamingResampler]
    fs_in: int
    fs_out: int

    @property
    def frame(self) -> int:
        return round(self.fs_in * _FRAME_S)


_INBOUND = _Direction("inbound 8k->16k", inbound_resampler, 8000, 16000)
_OUTBOUND = _Direction("outbound 24k->8k", outbound_resampler, 24000, 8000)


def _stream(resampler: StreamingResampler, x: NDArray[np.int16], chunk: int) -> NDArray[np.int16]:
    parts = [resampler.process(x[i : i + chunk]) for i in range(0, x.size, chunk)]
    return np.concatenate(parts)


def _tone(fs: int, freq: float, seconds: float, dbfs: float = -1.0) -> NDArray[np.int16]:
    t = np.arange(round(fs * seconds)) / fs
    return np.rint(32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _band_noise(fs: int, seconds: float, dbfs: float = -18.0, seed: int = 7) -> NDArray[np.int16]:
    """Gaussian noise band-limited to 100-3400 Hz, at ``dbfs`` RMS."""
    rng = np.random.default_rng(seed)
    band = signal.firwin(1001, [100, _PASSBAND_HZ], pass_zero=False, fs=fs)
    white = rng.standard_normal(round(fs * seconds) + 1000)
    noise: NDArray[np.float64] = signal.fftconvolve(white, band, "valid")
    noise *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(noise**2))
    return np.rint(noise).astype(np.int16)


def _amplitude(y: NDArray[Any], fs: int, freq: float) -> float:
    """Amplitude of the ``freq`` component over the last second (integer Hz: bin-centred)."""
    seg = y[-fs:].astype(np.float64)
    window = np.hanning(seg.size)
    phasor = np.exp(-2j * np.pi * freq * np.arange(seg.size) / fs)
    return float(2 * abs(np.dot(seg * window, phasor)) / window.sum())


def _tone_response(d: _Direction, freq: float) -> tuple[float, float]:
    """(gain at ``freq``, level of its alias/image) in dB re the input tone."""
    x = _tone(d.fs_in, freq, 1.25)
    y = _stream(d.make(), x, d.frame)
    level = _amplitude(x, d.fs_in, freq)
    # Up-sampling images a tone f to fs_in - f; down-sampling folds f to |f - k*fs_out|.
    mirror = d.fs_in - freq if d.fs_out > d.fs_in else abs(freq - d.fs_out * round(freq / d.fs_out))
    wanted = _amplitude(y, d.fs_out, freq) if freq < d.fs_out / 2 else 0.0
    unwanted = _amplitude(y, d.fs_out, mirror)
    return _db(wanted / level), _db(unwanted / level)


def _db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, 1e-12)))


def _measure_quality(d: _Direction) -> dict[str, Any]:
    passband = [_tone_response(d, f)[0] for f in range(100, _PASSBAND_HZ + 1, 100)]
    if d.fs_out > d.fs_in:
        leak_tones = list(range(100, _PASSBAND_HZ + 1, 100))  # images land at 4.6-7.9 kHz
        named = 1000.0  # its image is at 7 kHz
    else:
        top = d.fs_out + _PASSBAND_HZ
        leak_tones = [f for f in range(_STOPBAND_HZ, top + 1, 100) if f != d.fs_out]
        named = 5000.0  # its alias is at 3 kHz
    leaks = [_tone_response(d, f)[1] for f in leak_tones]
    worst = int(np.argmax(leaks))
    return {
        "passband_min_db": min(passband),
        "passband_max_db": max(passband),
        "gain_at_3400_db": passband[-1],
        "rejection_named_tone_hz": named,
        "rejection_named_db": -_tone_response(d, named)[1],
        "rejection_worst_db": -leaks[worst],
        "rejection_worst_tone_hz": leak_tones[worst],
    }


def _measure_delay_and_snr(d: _Direction) -> dict[str, Any]:
    up, down = d.fs_out // np.gcd(d.fs_in, d.fs_out), d.fs_in // np.gcd(d.fs_in, d.fs_out)
    x = _band_noise(d.fs_in, 5.0)
    resampler = d.make()
    y = _stream(resampler, x, d.frame).astype(np.float64)
    reference_taps = signal.firwin(
        _REFERENCE_TAPS, 4000, window=("kaiser", _REFERENCE_BETA), fs=d.fs_in * up
    )
    # resample_poly compensates its filter's delay, so the reference has none.
    ref = signal.resample_poly(x.astype(np.float64), up, down, window=reference_taps)
    skip, n = d.fs_out // 10, d.fs_out * 4
    lags = np.arange(0, round(0.01 * d.fs_out))
    corr = np.array([np.dot(y[skip + lag : skip + lag + n], ref[skip : skip + n]) for lag in lags])
    lag = _parabolic_peak(corr)
    shift = round(lag)
    error = y[skip + shift : skip + shift + n] - ref[skip : skip + n]
    snr = 10 * np.log10(np.sum(ref[skip : skip + n] ** 2) / np.sum(error**2))
    return {
        "delay_design_ms": resampler.delay_ms,
        "delay_xcorr_ms": 1000 * lag / d.fs_out,
        "delay_impulse_ms": _impulse_delay_ms(d),
        "snr_vs_reference_db": float(snr),
    }


def _parabolic_peak(values: NDArray[np.float64]) -> float:
    i = int(np.argmax(values))
    if 0 < i < values.size - 1:
        a, b, c = values[i - 1], values[i], values[i + 1]
        return i + 0.5 * float(a - c) / float(a - 2 * b + c)
    return float(i)


def _impulse_delay_ms(d: _Direction) -> float:
    at_in = d.fs_in // 100  # 10 ms in: a whole number of output samples in both directions
    x = np.zeros(d.fs_in // 10, dtype=np.int16)
    x[at_in] = 16384
    y = _stream(d.make(), x, d.frame)
    peak = int(np.argmax(np.abs(y)))
    return 1000 * (peak / d.fs_out - at_in / d.fs_in)


def _time_frames(process: Callable[[bytes], bytes], frame: bytes, count: int) -> dict[str, float]:
    for _ in range(50):  # warm caches and allocator
        process(frame)
    wall: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        process(frame)
        wall.append(time.perf_counter() - start)
    # A second, untimed loop for the mean CPU time: process_time counts every
    # thread of the process (a spinning BLAS worker would show up here).
    cpu_start = time.process_time()
    for _ in range(count):
        process(frame)
    cpu = (time.process_time() - cpu_start) / count
    median = statistics.median(wall)
    return {
        "median_us_per_frame": median * 1e6,
        "mean_cpu_us_per_frame": cpu * 1e6,
        "ms_per_call_second": median * _FRAMES_PER_SECOND * 1e3,
    }


def _measure_cpu(frames: int) -> dict[str, Any]:
    ulaw = pcm16_to_ulaw(_band_noise(8000, _FRAME_S * 10)[: _INBOUND.frame])
    pcm24 = _band_noise(24000, _FRAME_S * 10)[: _OUTBOUND.frame].astype("<i2").tobytes()
    inbound = _time_frames(InboundTranscoder().process, ulaw, frames)
    outbound = _time_frames(OutboundTranscoder().process, pcm24, frames)
    up, down = inbound_resampler(), outbound_resampler()
    up_in = np.frombuffer(ulaw, dtype=np.uint8).astype(np.int16)
    down_in = np.frombuffer(pcm24, dtype="<i2").astype(np.int16)
    return {
        "frames_timed": frames,
        "inbound_transcoder": inbound,
        "outbound_transcoder": outbound,
        "inbound_resampler_only": _time_frames(lambda _: up.process(up_in).tobytes(), b"", frames),
        "outbound_resampler_only": _time_frames(
            lambda _: down.process(down_in).tobytes(), b"", frames
        ),
        "both_ms_per_call_second": inbound["ms_per_call_second"] + outbound["ms_per_call_second"],
    }


def measure(frames: int = 5000) -> dict[str, Any]:
    """All figures as a JSON-ready dict."""
    directions = {}
    for d in (_INBOUND, _OUTBOUND):
        directions[d.name] = {**_measure_delay_and_snr(d), **_measure_quality(d)}
    return {"cpu": _measure_cpu(frames), "directions": directions}


def _print_text(report: dict[str, Any]) -> None:
    cpu = report["cpu"]
    print(f"CPU (median of {cpu['frames_timed']} timed 20 ms frames):")
    for key in (
        "inbound_transcoder",
        "outbound_transcoder",
        "inbound_resampler_only",
        "outbound_resampler_only",
    ):
        f = cpu[key]
        print(
            f"  {key:26s} {f['median_us_per_frame']:7.2f} us/frame "
            f"(mean CPU {f['mean_cpu_us_per_frame']:6.2f})  "
            f"{f['ms_per_call_second']:6.3f} ms/call-s"
        )
    print(f"  both directions            {cpu['both_ms_per_call_second']:6.3f} ms per call-second")
    for name, q in report["directions"].items():
        print(f"{name}:")
        print(
            f"  delay: design {q['delay_design_ms']:.3f} ms, impulse peak "
            f"{q['delay_impulse_ms']:.3f} ms, cross-correlation {q['delay_xcorr_ms']:.3f} ms"
        )
        print(
            f"  passband 100-3400 Hz: {q['passband_min_db']:+.3f} .. {q['passband_max_db']:+.3f} dB"
            f" (at 3.4 kHz {q['gain_at_3400_db']:+.3f} dB)"
        )
        print(
            f"  rejection: {q['rejection_named_db']:.1f} dB for a "
            f"{q['rejection_named_tone_hz']:.0f} Hz tone; worst {q['rejection_worst_db']:.1f} dB "
            f"(tone {q['rejection_worst_tone_hz']} Hz)"
        )
        snr = q["snr_vs_reference_db"]
        print(f"  SNR vs one-shot {_REFERENCE_TAPS}-tap reference: {snr:.1f} dB")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codec-report", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--frames", type=int, default=5000, help="20 ms frames to time")
    args = parser.parse_args(argv)
    report = measure(args.frames)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
