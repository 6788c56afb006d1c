"""Twilio's outbound buffer as the simulator models it: order, marks, clear, underruns."""

from __future__ import annotations

import numpy as np

from telephony.mulaw import pcm16_to_ulaw
from telephony.playback import Ear, Player, Tick


def test_player_plays_in_order_and_pads_with_silence() -> None:
    player = Player()
    player.push_audio(b"\x01" * 200)
    first, second, third = player.tick(), player.tick(), player.tick()
    assert (first.frame, first.played) == (b"\x01" * 160, 160)
    assert (second.frame, second.played) == (b"\x01" * 40 + b"\xff" * 120, 40)
    assert (third.frame, third.played) == (b"\xff" * 160, 0)


def test_player_marks_wait_for_playback() -> None:
    player = Player()
    assert player.push_mark("empty") == ("empty",)  # nothing queued: at once
    player.push_audio(b"\x01" * 320)
    assert player.push_mark("a") == ()
    player.push_audio(b"\x02" * 160)
    assert player.push_mark("b") == ()
    assert player.tick().marks == ()
    assert player.tick().marks == ("a",)
    assert player.tick().marks == ("b",)


def test_player_clear_discards_buffer_and_returns_pending_marks() -> None:
    player = Player()
    player.push_audio(b"\x01" * 480)
    player.push_mark("a")
    player.push_audio(b"\x01" * 480)
    player.push_mark("b")
    player.tick()
    assert player.clear() == ("a", "b")
    assert player.buffered == 0 and player.pending_marks == ()
    assert player.tick() == Tick(b"\xff" * 160, 0, ())
    player.push_audio(b"\x01" * 160)  # positions stay consistent after a clear
    assert player.push_mark("c") == ()
    assert player.tick().marks == ("c",)


def _tick(played: int) -> Tick:
    loud = pcm16_to_ulaw(np.full(160, 5000, np.int16))
    return Tick(loud[:played] + b"\xff" * (160 - played), played, ())


def test_ear_counts_short_gaps_as_underruns_but_not_reply_ends() -> None:
    ear = Ear(silence_rms=200, gap_window_ticks=5)
    pattern = [0, 160, 160, 0, 0, 160, 80, 160] + [0] * 10 + [160]
    voiced = [ear.hear(_tick(p)) for p in pattern]
    assert voiced[:3] == [False, True, True]
    assert ear.underruns == 2  # the 2-tick hole and the partial frame; not the long pause
    assert ear.underrun_ticks == 3
    assert ear.first_voiced_at(3) == 5
    assert ear.quiet_ticks_since_voice(0) == 0
