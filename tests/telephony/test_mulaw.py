"""mu-law tables against an independent G.711 reference, every code and every sample."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony import mulaw
from telephony.mulaw import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16

# The public functions (audioop where it imports) and the numpy tables (the fallback).
DECODERS = [
    pytest.param(ulaw_to_pcm16, id="public"),
    pytest.param(mulaw._ulaw_to_pcm16_by_table, id="table"),
]
ENCODERS = [
    pytest.param(pcm16_to_ulaw, id="public"),
    pytest.param(mulaw._pcm16_to_ulaw_by_table, id="table"),
]
Decoder = Callable[[bytes], NDArray[np.int16]]
Encoder = Callable[[NDArray[np.int16]], bytes]

# Reference: Sun Microsystems' g711.c (the code audioop was built from), one sample at a time.
_BIAS = 0x84
_CLIP = 8159
_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def reference_linear2ulaw(sample: int) -> int:
    pcm_val = sample >> 2  # 16-bit to 14-bit, arithmetic shift
    if pcm_val < 0:
        pcm_val = -pcm_val
        mask = 0x7F
    else:
        mask = 0xFF
    pcm_val = min(pcm_val, _CLIP) + (_BIAS >> 2)
    seg = next((i for i, end in enumerate(_SEG_UEND) if pcm_val <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm_val >> (seg + 1)) & 0xF)) ^ mask


def reference_ulaw2linear(code: int) -> int:
    u_val = ~code & 0xFF
    t = ((u_val & 0x0F) << 3) + _BIAS
    t <<= (u_val & 0x70) >> 4
    return _BIAS - t if u_val & 0x80 else t - _BIAS


def _audioop() -> ModuleType | None:
    # Deprecated in 3.11, removed in 3.13: compare against it only where it exists.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


@pytest.mark.parametrize("decode", DECODERS)
def test_decode_matches_reference_for_all_256_codes(decode: Decoder) -> None:
    expected = [reference_ulaw2linear(code) for code in range(256)]
    decoded = decode(ALL_CODES)
    assert decoded.dtype == np.int16
    assert decoded.tolist() == expected


@pytest.mark.parametrize("encode", ENCODERS)
def test_encode_matches_reference_for_all_65536_samples(encode: Encoder) -> None:
    expected = bytes(reference_linear2ulaw(s) for s in range(-32768, 32768))
    assert encode(ALL_SAMPLES) == expected


def test_tables_match_audioop_where_available() -> None:
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop is not in this Python")
    # What lets mulaw use audioop in place of its tables: identical on every input.
    table_encoded = mulaw._pcm16_to_ulaw_by_table(ALL_SAMPLES)
    assert table_encoded == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)
    table_decoded = mulaw._ulaw_to_pcm16_by_table(ALL_CODES).tobytes()
    assert table_decoded == audioop.ulaw2lin(ALL_CODES, 2)


def test_audioop_is_used_where_available() -> None:
    available = _audioop() is not None
    assert (mulaw._ulaw2lin is not None) == available
    assert (mulaw._lin2ulaw is not None) == available


def test_importing_mulaw_leaks_no_deprecation_warning() -> None:
    # A fresh interpreter: here audioop (and its warning) may already have been imported.
    code = "import telephony.mulaw"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_without_audioop_the_tables_do_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mulaw, "_ulaw2lin", None)
    monkeypatch.setattr(mulaw, "_lin2ulaw", None)
    expected_codes = bytes(reference_linear2ulaw(s) for s in range(-32768, 32768))
    assert pcm16_to_ulaw(ALL_SAMPLES) == expected_codes
    assert ulaw_to_pcm16(ALL_CODES).tolist() == [reference_ulaw2linear(c) for c in range(256)]
    assert pcm16_to_ulaw(ALL_SAMPLES[::7]) == expected_codes[::7]


def test_decoded_samples_are_a_writable_int16_array() -> None:
    decoded = ulaw_to_pcm16(bytes([0x00, 0x80, 0xFF]))
    assert decoded.dtype == np.int16 and decoded.flags.writeable
    decoded[0] = 1  # callers may work on it in place


def test_accepts_any_bytes_like_input() -> None:
    expected = ulaw_to_pcm16(ALL_CODES)
    assert np.array_equal(ulaw_to_pcm16(bytearray(ALL_CODES)), expected)
    assert np.array_equal(ulaw_to_pcm16(memoryview(ALL_CODES)), expected)  # type: ignore[arg-type]


def test_reference_spot_values() -> None:
    # Known G.711 points, so the reference itself is pinned down.
    assert reference_linear2ulaw(0) == 0xFF
    assert reference_linear2ulaw(32767) == 0x80
    assert reference_linear2ulaw(-32768) == 0x00
    assert reference_ulaw2linear(0x80) == 32124
    assert reference_ulaw2linear(0x00) == -32124
    assert reference_ulaw2linear(0x7F) == 0  # negative zero


def test_silence_byte() -> None:
    assert ULAW_SILENCE == 0xFF
    assert pcm16_to_ulaw(np.zeros(4, dtype=np.int16)) == bytes([ULAW_SILENCE]) * 4
    assert ulaw_to_pcm16(bytes([ULAW_SILENCE])).tolist() == [0]


def test_decoded_values_encode_back_to_an_equivalent_code() -> None:
    decoded = ulaw_to_pcm16(ALL_CODES)
    assert np.array_equal(ulaw_to_pcm16(pcm16_to_ulaw(decoded)), decoded)


def test_non_contiguous_input_is_encoded_like_a_copy() -> None:
    strided = ALL_SAMPLES[::7]
    assert pcm16_to_ulaw(strided) == pcm16_to_ulaw(strided.copy())
    reversed_view = ALL_SAMPLES[::-1]
    assert pcm16_to_ulaw(reversed_view) == pcm16_to_ulaw(ALL_SAMPLES)[::-1]


def test_empty_input() -> None:
    assert pcm16_to_ulaw(np.empty(0, dtype=np.int16)) == b""
    assert ulaw_to_pcm16(b"").size == 0


def test_rejects_wrong_dtype() -> None:
    with pytest.raises(TypeError):
        pcm16_to_ulaw(np.zeros(4, dtype=np.int32))  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # int16 in the other byte order is not int16 here
        pcm16_to_ulaw(np.zeros(4, dtype=np.int16).astype(np.int16().dtype.newbyteorder()))
