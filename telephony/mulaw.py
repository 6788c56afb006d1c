"""G.711 mu-law <-> 16-bit linear PCM, by table lookup.

Twilio Media Streams carry 8 kHz mono mu-law, one byte per sample, in both
directions. Both tables are built once at import from the Sun Microsystems
reference algorithm (``g711.c``), which is what ``audioop.lin2ulaw`` and
``audioop.ulaw2lin`` implement. Encoding drops the two low bits, adds the bias
33 (0x84 >> 2), finds the segment (exponent) and keeps four mantissa bits; every
bit of the result is inverted on the wire so that silence is 0xFF, not a run of
zeros.

Where ``audioop`` can be imported (the stdlib up to 3.12, deprecated; the
``audioop-lts`` backport on 3.13+), the conversions use it: it is bit-identical
to the tables for all 256 codes and all 65536 samples (tests/telephony/test_mulaw.py
checks both against the reference) and costs a single C call, ~0.1-0.5 us per
20 ms frame against ~1.2 us for the two numpy calls of a table lookup. Without
it, the tables do the work.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["ULAW_SILENCE", "pcm16_to_ulaw", "ulaw_to_pcm16"]

#: The mu-law byte for linear 0 (positive zero, all bits inverted).
ULAW_SILENCE: Final[int] = 0xFF

_BIAS: Final = 0x84
# Magnitude limit of the 14-bit value before biasing. 8159 + 33 = 0x2000 lands past segment 7,
# which g711.c maps to the largest code (0x7F before inversion), as all larger values.
_CLIP_14BIT: Final = 8159
_SEGMENT_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _build_decode_table() -> NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> NDArray[np.uint8]:
    # Index i is the uint16 view of an int16 sample, so the table is used as
    # ``_ENCODE[samples.view(np.uint16)]`` with no sign handling at lookup time.
    linear = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    shifted = linear >> 2  # arithmetic shift: floors negatives, as g711.c and audioop do
    negative = shifted < 0
    magnitude = np.minimum(np.abs(shifted), _CLIP_14BIT) + (_BIAS >> 2)
    # First segment whose top end is >= the magnitude (g711.c's ``search``); 8 means past the top.
    segment = np.searchsorted(_SEGMENT_END, magnitude, side="left").astype(np.int32)
    in_range = segment < 8
    code = np.where(
        in_range, (segment << 4) | ((magnitude >> np.minimum(segment + 1, 8)) & 0x0F), 0x7F
    )
    mask = np.where(negative, 0x7F, 0xFF)
    return (code ^ mask).astype(np.uint8)


_DECODE: Final[NDArray[np.int16]] = _build_decode_table()
_ENCODE: Final[NDArray[np.uint8]] = _build_encode_table()

# audioop's functions (both take any C-contiguous buffer and return bytes in native
# byte order, as np.int16 is), or None where it cannot be imported.
_ulaw2lin: Callable[..., bytes] | None
_lin2ulaw: Callable[..., bytes] | None
try:
    # Importing audioop on 3.11/3.12 warns that it is deprecated; the warning is
    # about the stdlib's plans, not something a user of this package can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
except ImportError:  # Python >= 3.13 without the audioop-lts backport
    _ulaw2lin = _lin2ulaw = None
else:
    _ulaw2lin, _lin2ulaw = audioop.ulaw2lin, audioop.lin2ulaw


def ulaw_to_pcm16(data: bytes) -> NDArray[np.int16]:
    """Decode mu-law bytes to int16 samples (one sample per byte)."""
    if _ulaw2lin is None:
        return _ulaw_to_pcm16_by_table(data)
    # Through a bytearray so the result is writable, as the table lookup's is.
    return np.frombuffer(bytearray(_ulaw2lin(data, 2)), dtype=np.int16)


def pcm16_to_ulaw(samples: NDArray[np.int16]) -> bytes:
    """Encode int16 samples to mu-law bytes (one byte per sample)."""
    if samples.dtype != np.int16:
        raise TypeError(f"pcm16_to_ulaw needs int16 samples, got {samples.dtype}")
    if _lin2ulaw is None:
        return _pcm16_to_ulaw_by_table(samples)
    # audioop reads the array's buffer directly, but only a C-contiguous one.
    if not samples.flags.c_contiguous:
        samples = np.ascontiguousarray(samples)
    return _lin2ulaw(samples, 2)


def _ulaw_to_pcm16_by_table(data: bytes) -> NDArray[np.int16]:
    return _DECODE.take(np.frombuffer(data, dtype=np.uint8))


def _pcm16_to_ulaw_by_table(samples: NDArray[np.int16]) -> bytes:
    as_index = np.ascontiguousarray(samples).view(np.uint16)
    return _ENCODE.take(as_index).tobytes()
