"""Optional MP3 copy of a finished recording, when the `lameenc` wheel is installed.

`lameenc` is an optional extra (`voicebot[mp3]`): without it the WAV is the only audio
file and this module logs at debug level and does nothing.
"""

from __future__ import annotations

import importlib
import os
import wave
from pathlib import Path
from types import ModuleType

import structlog

# 32 kbit/s is a valid MPEG-2.5 rate for 8 kHz stereo; telephone audio has nothing above.
BITRATE_KBPS = 32
QUALITY = 5  # LAME's 2 (best) .. 7 (fastest); 5 is its usual speed/quality middle
CHUNK_FRAMES = 8000

log = structlog.get_logger("app.recording")


def _lameenc() -> ModuleType | None:
    try:
        return importlib.import_module("lameenc")
    except ImportError:
        return None


def mp3_available() -> bool:
    return _lameenc() is not None


def encode_mp3(wav_path: Path, mp3_path: Path) -> bool:
    """Encode `wav_path` to `mp3_path` (tmp + rename); False when lameenc is missing.

    Blocking and CPU-bound: the recorder calls it on its writer thread.
    """
    lameenc = _lameenc()
    if lameenc is None:
        log.debug("recording.mp3_skipped", reason="lameenc is not installed")
        return False
    tmp = mp3_path.with_name(mp3_path.name + ".tmp")
    with wave.open(str(wav_path), "rb") as src, tmp.open("wb") as out:
        encoder = lameenc.Encoder()
        encoder.set_bit_rate(BITRATE_KBPS)
        encoder.set_in_sample_rate(src.getframerate())
        encoder.set_channels(src.getnchannels())
        encoder.set_quality(QUALITY)
        while frames := src.readframes(CHUNK_FRAMES):
            out.write(encoder.encode(frames))
        out.write(encoder.flush())
    os.replace(tmp, mp3_path)
    return True
