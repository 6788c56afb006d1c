"""Per-call transcoders between the Twilio wire format and Gemini Live's PCM.

- Inbound (caller -> Live): 8 kHz mu-law bytes -> 16 kHz PCM16LE bytes.
- Outbound (Live -> caller): 24 kHz PCM16LE bytes -> 8 kHz mu-law bytes.

Each holds its resampler's history, so one instance serves one call direction
for the life of the stream; ``reset()`` drops that history (on barge-in, so no
audio from before a ``clear`` leaks out after it).
"""

from __future__ import annotations

import numpy as np

from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from telephony.resample import StreamingResampler, inbound_resampler, outbound_resampler

__all__ = ["InboundTranscoder", "OutboundTranscoder"]

# Live and Twilio both specify little-endian 16-bit PCM, whatever the host order.
_PCM16LE = np.dtype("<i2")


class InboundTranscoder:
    """Caller audio: mu-law 8 kHz -> PCM16LE 16 kHz, two output samples per input byte."""

    def __init__(self) -> None:
        self._resampler: StreamingResampler = inbound_resampler()

    def process(self, ulaw: bytes) -> bytes:
        pcm = self._resampler.process(ulaw_to_pcm16(ulaw))
        return pcm.astype(_PCM16LE, copy=False).tobytes()

    def reset(self) -> None:
        self._resampler.reset()


class OutboundTranscoder:
    """Model audio: PCM16LE 24 kHz -> mu-law 8 kHz.

    Live sends chunks of arbitrary size, so a chunk may end mid-sample (odd
    byte count) or mid-way between output samples (not a multiple of three
    samples); the stray byte is kept here and the phase in the resampler.
    """

    def __init__(self) -> None:
        self._resampler: StreamingResampler = outbound_resampler()
        self._odd_byte = b""

    def process(self, pcm: bytes) -> bytes:
        if self._odd_byte:
            pcm = self._odd_byte + pcm
        whole = len(pcm) & ~1
        self._odd_byte = pcm[whole:]
        samples = np.frombuffer(pcm, dtype=_PCM16LE, count=whole // 2).astype(np.int16)
        return pcm16_to_ulaw(self._resampler.process(samples))

    def reset(self) -> None:
        self._resampler.reset()
        self._odd_byte = b""
