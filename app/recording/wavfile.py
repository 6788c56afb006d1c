"""A WAV file that is valid after every flush, and the repair of one left by a crash.

We write the 44-byte header ourselves instead of using `wave.Wave_write` because the
crash-safety argument depends on the order of writes, which `wave` does not promise:
data first, then the RIFF and data size fields, then one flush to the OS. After a
`kill -9` the header therefore never claims more data than the file holds, and the file
opens with the stdlib `wave` module as it is. `wave` is still what reads and verifies.
"""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path
from typing import BinaryIO

HEADER_SIZE = 44
SAMPLE_WIDTH = 2  # 16-bit PCM
_RIFF_SIZE_AT = 4
_DATA_SIZE_AT = 40
# RIFF, size, WAVE, "fmt ", 16, PCM=1, channels, rate, byte rate, block align, bits,
# "data", size: the canonical PCM header with the data chunk right after "fmt ".
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


def wav_header(data_bytes: int, *, sample_rate: int, channels: int) -> bytes:
    """The canonical 44-byte PCM16 header for `data_bytes` of sample data."""
    block = channels * SAMPLE_WIDTH
    return _HEADER.pack(
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels,
        sample_rate, sample_rate * block, block, 8 * SAMPLE_WIDTH, b"data", data_bytes,
    )  # fmt: skip


class WavAppender:
    """Appends PCM16 frames to an open, empty, seekable file, keeping the header true."""

    def __init__(self, file: BinaryIO, *, sample_rate: int, channels: int) -> None:
        self._file = file
        self.data_bytes = 0
        file.write(wav_header(0, sample_rate=sample_rate, channels=channels))
        file.flush()

    def append(self, frames: bytes) -> None:
        self._file.write(frames)
        self.data_bytes += len(frames)

    def commit(self, *, fsync: bool = False) -> None:
        """Make the header describe what was appended and hand it all to the OS.

        `seek` flushes the buffered data before the size fields are written, so the OS
        always has the data before a header that counts it. fsync (power-loss safety)
        is optional: the OS page cache already survives a killed process.
        """
        self._file.seek(_RIFF_SIZE_AT)
        self._file.write(struct.pack("<I", 36 + self.data_bytes))
        self._file.seek(_DATA_SIZE_AT)
        self._file.write(struct.pack("<I", self.data_bytes))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def wav_duration(path: Path) -> float:
    """Seconds of audio in a WAV, read with the stdlib `wave` module."""
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def repair_wav(path: Path, *, sample_rate: int, channels: int = 2) -> bool:
    """Make the header's sizes match the file; True when the file was changed.

    A partial last frame is cut off. When the header itself is unreadable (a crash
    before the first flush, or garbage), a canonical header for our own format
    (stereo PCM16 at `sample_rate`, data at byte 44) replaces it: only the recorder
    writes into the recordings directory.
    """
    size = path.stat().st_size
    with path.open("r+b") as file:
        head = file.read(HEADER_SIZE)
        parsed = _parse_header(head)
        if parsed is None:
            parsed = (sample_rate, channels, -1, -1)
        rate, chans, riff_size, declared = parsed
        block = chans * SAMPLE_WIDTH
        data_bytes = max(0, size - HEADER_SIZE) // block * block
        fits = size == HEADER_SIZE + data_bytes and riff_size == 36 + data_bytes
        if fits and declared == data_bytes:
            return False
        file.seek(0)
        file.write(wav_header(data_bytes, sample_rate=rate, channels=chans))
        file.truncate(HEADER_SIZE + data_bytes)
        file.flush()
        os.fsync(file.fileno())
    return True


def _parse_header(head: bytes) -> tuple[int, int, int, int] | None:
    """(rate, channels, RIFF size, data size) of a canonical PCM16 header, else None."""
    if len(head) < HEADER_SIZE:
        return None
    (
        riff,
        riff_size,
        wave_id,
        fmt_id,
        fmt_size,
        fmt,
        chans,
        rate,
        _,
        _,
        bits,
        data_id,
        data_bytes,
    ) = _HEADER.unpack(head)
    canonical = (riff, wave_id, fmt_id, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    if not canonical or (fmt_size, fmt, bits) != (16, 1, 8 * SAMPLE_WIDTH):
        return None
    if not 1 <= chans <= 8 or not 1000 <= rate <= 192_000:
        return None
    return rate, chans, riff_size, data_bytes
