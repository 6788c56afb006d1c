"""Bundled speech clips (rendered once with espeak-ng by scripts/render_clips.sh)."""

from __future__ import annotations

from importlib import resources

import numpy as np
from numpy.typing import NDArray

from telephony.audiofile import load_audio_8k


def clip_path(name: str) -> str:
    """Filesystem path of a bundled clip, e.g. `clip_path("apology")`."""
    ref = resources.files(__name__).joinpath(f"{name}.wav")
    if not ref.is_file():
        raise FileNotFoundError(f"no bundled clip named {name!r}")
    return str(ref)


def load_clip_8k(name: str) -> NDArray[np.int16]:
    """A bundled clip as 8 kHz mono int16, ready for the telephone side."""
    return load_audio_8k(clip_path(name))
