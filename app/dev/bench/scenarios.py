"""What the bench's callers say and what the fake Live server answers, per scenario.

- `conversational` (the default): turns. Replies stream Gemini-like at 4x real time in
  40 ms chunks; the turn ends after 500 ms of caller silence (longer than any pause
  inside the caller's clips, so a reply never starts mid-utterance); speech over a reply
  (still playing) interrupts it (barge-in, so `clear` is measured).
- `continuous`: both sides talk for the whole call. The caller speaks clips back to back;
  the fake streams agent audio in 20 ms messages at real time from the caller's first
  frame (after a 100 ms lead, so the caller's playback never runs dry), one turn per pass
  of its clip, no barge-in. Every 20 ms there is one frame each way: the heaviest steady
  load a call puts on the media path, and the workload the floor relay mirrors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.assets import load_clip_8k

RATE = 8000
_GOLDEN = (5**0.5 - 1) / 2

#: (seconds, call index) -> that call's caller audio, 8 kHz int16.
CallerScript = Callable[[float, int], NDArray[np.int16]]


def _silence(seconds: float) -> NDArray[np.int16]:
    return np.zeros(int(seconds * RATE), np.int16)


def _from_cycle(cycle: NDArray[np.int16], lead: float, seconds: float, offset: int) -> Any:
    """`lead` s of silence, then `cycle` repeated from a phase set by `offset`."""
    phase = int((offset * _GOLDEN) % 1.0 * cycle.size)
    want = int(seconds * RATE)
    repeats = -(-(want + phase) // cycle.size) + 1
    body = np.tile(cycle, repeats)[phase:]
    return np.concatenate([_silence(lead), body])[:want]


def caller_script(seconds: float, offset: int = 0) -> NDArray[np.int16]:
    """`seconds` of caller audio: 1 s of listening (then talking over the greeting), and
    cycles of an utterance, a short pause, an utterance over the agent's reply (barge-in)
    and a long pause that lets the next reply play out. `offset` shifts where in the
    cycle each call starts (golden-ratio steps, so any N spreads evenly): callers in
    lock-step would make every reply stream at the same moment, a burst real traffic
    does not have."""
    booking, goodbye = load_clip_8k("caller_booking"), load_clip_8k("caller_goodbye")
    cycle = np.concatenate([booking, _silence(0.9), goodbye, _silence(4.5)])
    result: NDArray[np.int16] = _from_cycle(cycle, 1.0 + 0.02 * (offset % 25), seconds, offset)
    return result


def continuous_caller_script(seconds: float, offset: int = 0) -> NDArray[np.int16]:
    """`seconds` of caller speech with only the clips' own short pauses: the caller talks
    throughout (over the agent, who does not stop)."""
    booking, goodbye = load_clip_8k("caller_booking"), load_clip_8k("caller_goodbye")
    cycle = np.concatenate([booking, _silence(0.2), goodbye, _silence(0.2)])
    result: NDArray[np.int16] = _from_cycle(cycle, 0.0, seconds, offset)
    return result


@dataclass(frozen=True)
class BenchScenario:
    name: str
    fake_live: dict[str, Any]  # the fake Live server's scenario (app.dev.fakes.live.scenario)
    caller: CallerScript


CONVERSATIONAL = BenchScenario(
    "conversational",
    {
        "greeting": {"clip": "greeting"},
        "turns": [{"clip": "reply_booking"}, {"clip": "reply_generic"}],
        "when_exhausted": "cycle",
        "vad": {"silence_ms": 500},
        "audio": {"chunk_ms": 40, "speed": 4.0, "bundle": True},
        "barge_in": {"enabled": True, "margin_ms": 300},
    },
    caller_script,
)

CONTINUOUS = BenchScenario(
    "continuous",
    {
        "continuous": {"clip": "reply_generic", "chunk_ms": 20, "lead_ms": 100},
        "barge_in": {"enabled": False},
    },
    continuous_caller_script,
)

SCENARIOS = {s.name: s for s in (CONVERSATIONAL, CONTINUOUS)}
