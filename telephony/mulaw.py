"""G.711 mu-law <-> 16-bit linear PCM, by table lookup.

Twilio Media Streams carry 8 kHz mono mu-law, one byte per sample, in both
directions. Both tables are built once at import from the Sun Microsystems
reference algorithm (``g711.c``), which is what ``audioop.lin2ulaw`` and
``audioop.ulaw2lin`` implement; ``audioop`` is gone from the stdlib in 3.13, so
we carry our own. Encoding drops the two low bits, adds the bias 33 (0x84 >> 2),
finds the segment (exponent) and keeps four mantissa bits; every bit of the
result is inverted on the wire so that silence is 0xFF, not a run of zeros.
"""

from __future__ import annotations

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


def ulaw_to_pcm16(data: bytes) -> NDArray[np.int16]:
    """Decode mu-law bytes to int16 samples (one sample per byte)."""
    return _DECODE.take(np.frombuffer(data, dtype=np.uint8))


def pcm16_to_ulaw(samples: NDArray[np.int16]) -> bytes:
    """Encode int16 samples to mu-law bytes (one byte per sample)."""
    if samples.dtype != np.int16:
        raise TypeError(f"pcm16_to_ulaw needs int16 samples, got {samples.dtype}")
    as_index = np.ascontiguousarray(samples).view(np.uint16)
    return _ENCODE.take(as_index).tobytes()
