"""WAV loading for the simulator: any PCM WAV in, 8 kHz mono int16 out."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony.audiofile import load_audio_8k, write_wav

AMPLITUDE = 10000.0


def _tone(rate: int, seconds: float = 0.5, freq: float = 440.0) -> NDArray[np.float64]:
    t = np.arange(int(rate * seconds)) / rate
    return AMPLITUDE * np.sin(2 * np.pi * freq * t)


def _write_raw(path: Path, frames: bytes, rate: int, width: int, channels: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)


def _encode(samples: NDArray[np.float64], width: int) -> bytes:
    """Int16-scale floats as PCM of `width` bytes, the way WAV stores them."""
    if width == 1:
        return (np.rint(samples / 256) + 128).astype(np.uint8).tobytes()
    if width == 2:
        return np.rint(samples).astype("<i2").tobytes()
    if width == 3:
        ints = np.rint(samples * 256).astype("<i4").tobytes()
        return b"".join(ints[i : i + 3] for i in range(0, len(ints), 4))
    return np.rint(samples * 65536).astype("<i4").tobytes()


def _assert_tone(samples: NDArray[np.int16], seconds: float, freq: float = 440.0) -> None:
    assert samples.dtype == np.int16
    assert abs(samples.size - int(8000 * seconds)) <= 1
    expected = _tone(8000, seconds, freq)[: samples.size]
    middle = slice(200, samples.size - 200)  # skip resampler edge transients
    error = samples[middle].astype(np.float64) - expected[middle]
    assert np.sqrt(np.mean(error**2)) < 0.02 * AMPLITUDE


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_loads_pcm_widths_and_rates(tmp_path: Path, width: int, rate: int) -> None:
    path = tmp_path / f"tone-{width}-{rate}.wav"
    _write_raw(path, _encode(_tone(rate), width), rate, width, 1)
    samples = load_audio_8k(path)
    if width == 1:  # 8-bit quantisation noise is ~1% of this tone: only check the level
        assert abs(np.abs(samples[200:-200]).max() - AMPLITUDE) < 0.05 * AMPLITUDE
    else:
        _assert_tone(samples, 0.5)


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left = _tone(16000)
    right = np.zeros_like(left)
    interleaved = np.column_stack((left, right)).reshape(-1)
    path = tmp_path / "stereo.wav"
    _write_raw(path, _encode(interleaved, 2), 16000, 2, 2)
    samples = load_audio_8k(path)
    assert samples.size == 4000
    assert abs(np.abs(samples[200:-200]).max() - AMPLITUDE / 2) < 0.02 * AMPLITUDE


def test_loud_input_is_clipped_not_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    full_scale = np.full(1600, 32767.0)
    full_scale[::2] = -32768.0  # a Nyquist square: resampling overshoots past int16
    _write_raw(path, _encode(full_scale, 2), 16000, 2, 1)
    samples = load_audio_8k(path)
    assert samples.dtype == np.int16
    assert samples.min() >= -32768 and samples.max() <= 32767


def test_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    _write_raw(path, b"", 16000, 2, 1)
    assert load_audio_8k(path).size == 0


def test_not_a_wav_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        load_audio_8k(path)


def test_float_wav_is_refused_clearly(tmp_path: Path) -> None:
    # A minimal IEEE-float (format 3) WAV, which stdlib `wave` does not read.
    data = struct.pack("<4f", 0.0, 0.5, -0.5, 0.0)
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    riff += b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "float.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    with pytest.raises(ValueError, match=r"float\.wav.*not a readable PCM WAV"):
        load_audio_8k(path)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_audio_8k(tmp_path / "absent.wav")


def test_write_wav_round_trip(tmp_path: Path) -> None:
    samples = np.rint(_tone(8000)).astype(np.int16)
    path = tmp_path / "out.wav"
    write_wav(path, samples, 8000)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
    assert np.array_equal(load_audio_8k(path), samples)


def test_write_wav_stereo_from_columns(tmp_path: Path) -> None:
    stereo = np.zeros((800, 2), np.int16)
    stereo[:, 0] = 1000
    path = tmp_path / "stereo.wav"
    write_wav(path, stereo, 8000, channels=2)
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2
        raw = np.frombuffer(wav.readframes(800), "<i2").reshape(-1, 2)
    assert np.array_equal(raw, stereo)


def test_write_wav_validates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int16"):
        write_wav(tmp_path / "x.wav", np.zeros(10, np.float32), 8000)
    with pytest.raises(ValueError, match="channels"):
        write_wav(tmp_path / "x.wav", np.zeros((10, 3), np.int16), 8000, channels=2)
    with pytest.raises(ValueError, match="channels"):
        write_wav(tmp_path / "x.wav", np.zeros(11, np.int16), 8000, channels=2)
