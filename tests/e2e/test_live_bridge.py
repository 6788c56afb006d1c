"""Issue 3: the bridge end to end over real sockets.

Simulated Twilio caller -> real server (uvicorn) -> real google-genai SDK -> fake Live
server over TLS, and back. Audio is checked by measurement: tones keep their frequency
and level through mu-law and both resamplers, and nothing above the telephone band
aliases into it.
"""

from __future__ import annotations

import time

import numpy as np

from app.assets import load_clip_8k
from app.dev.fakes.live.clips import clip_text, load_clip
from app.dev.fakes.twilio_caller import CallReport, simulate_call
from app.dev.local_stack import LocalStack
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from tests.e2e.conftest import StackFactory, call_options, call_record, recording, ring
from tests.e2e.measure import (
    band_level,
    best_match,
    concat,
    db,
    heard_in_full,
    middle,
    peak_frequency,
    rms,
    segments,
    silence,
    tone,
    voiced_span,
)

QUIET = {"clip": None}  # a reply without audio
FRAME = 160  # 20 ms at 8 kHz


def tone_rms(name: str) -> float:
    """RMS of the steady part of a tone clip as the fake sends it (24 kHz)."""
    pcm = load_clip(name, 24_000)
    return rms(middle(pcm, (0, pcm.size), 1200))


# --- caller -> Gemini -------------------------------------------------------------------


async def test_caller_tone_reaches_live_at_16k_intact(stack: StackFactory) -> None:
    s = await stack({"greeting": QUIET, "default_reply": QUIET})
    sent = tone(1000, 1.0, amplitude=8000)
    report = await simulate_call(call_options(s, concat(silence(0.2), sent), listen_seconds=0.5))
    assert report.error is None, report.error

    assert s.fake is not None
    (session,) = s.fake.sessions
    assert {f.rate for f in session.audio_frames} == {16_000}
    got = session.audio_array()
    # Every 20 ms the caller sent became 20 ms at 16 kHz: nothing lost, nothing doubled.
    assert got.size == report.frames_sent * 320
    span = voiced_span(got, rate=16_000)
    assert span is not None
    assert abs((span[1] - span[0]) / 16_000 - 1.0) <= 0.04
    body = middle(got, span, trim=800)
    assert abs(peak_frequency(body, 16_000) - 1000) <= 5
    # The level is the caller's (mu-law costs a fraction of a dB).
    reference = ulaw_to_pcm16(pcm16_to_ulaw(sent))
    assert abs(db(rms(body) / rms(middle(reference, (0, reference.size), 400)))) <= 1.0
    # Upsampling 8k -> 16k leaves no image of the tone at 8000 - 1000 Hz.
    assert db(band_level(body, 7000, 16_000) / band_level(body, 1000, 16_000)) <= -60


# --- Gemini -> caller -------------------------------------------------------------------


async def agent_tone_call(
    stack: StackFactory, freq: float, seconds: float
) -> tuple[LocalStack, CallReport]:
    """A call where the agent's greeting is a tone and the caller only listens."""
    s = await stack({"greeting": {"clip": f"tone:{freq:g}:{seconds:g}"}, "default_reply": QUIET})
    report = await simulate_call(
        call_options(s, silence(0.1), wait_for_greeting_seconds=seconds + 2, listen_seconds=0.3)
    )
    assert report.error is None, report.error
    return s, report


async def test_agent_tone_reaches_caller_at_8k_intact(stack: StackFactory) -> None:
    _, report = await agent_tone_call(stack, 1000, 1.5)
    span = voiced_span(report.heard)
    assert span is not None
    assert abs((span[1] - span[0]) / 8000 - 1.5) <= 0.06  # all of it, played once
    body = middle(report.heard, span, trim=400)
    assert abs(peak_frequency(body, 8000) - 1000) <= 5
    assert abs(db(rms(body) / tone_rms("tone:1000:1.5"))) <= 1.0


async def test_agent_tone_above_telephone_band_is_not_aliased(stack: StackFactory) -> None:
    s, report = await agent_tone_call(stack, 5000, 1.5)
    # The audio arrived (about 1.5 s of frames) but carries nothing audible.
    assert report.frames_received * 0.02 >= 1.4
    level = tone_rms("tone:5000:1.5")
    # Folded at the 4 kHz Nyquist, a 5 kHz tone would be heard at 3 kHz.
    assert db(band_level(report.heard, 3000, 8000, width=100) / level) <= -70
    # Nothing louder than mu-law's smallest step (8) reached the caller at all.
    assert int(np.abs(report.heard.astype(np.int32)).max()) <= 8
    # Before mu-law (the recording's agent channel) the whole tone is >= 70 dB down.
    agent = (await recording(s, report.call_sid))[:, 1]
    assert db(rms(agent) / level) <= -70


# --- barge-in ---------------------------------------------------------------------------


async def test_barge_in_clears_and_no_stale_audio_follows(stack: StackFactory) -> None:
    # A 6 s agent reply (sent by the fake 4x faster than real time, so most of it is
    # queued in the bridge when the caller talks over it after 1 s).
    s = await stack(
        {"greeting": {"clip": "tone:1000:6"}, "default_reply": {"clip": "tone:2000:0.5"}}
    )
    # Speaking at 1.1 s puts the clear mid-reply, with most of it still queued.
    caller = concat(silence(1.1), tone(400, 0.6), silence(0.2))
    options = call_options(s, caller, listen_seconds=1.5)
    await ring(s, options)  # the greeting is ready: its first frames go out at once
    report = await simulate_call(options)
    assert report.error is None, report.error

    assert report.clears >= 1
    cleared_at = round(report.clear_times_ms[0] * 8)  # samples on the caller's clock
    level = tone_rms("tone:1000:6")
    before, after = report.heard[:cleared_at], report.heard[cleared_at + FRAME :]
    # The reply was playing when the caller spoke, and was cut: about 1 s of 6 s heard.
    (cut,) = segments(before)
    assert round(cut.freq) == 1000 and cut.seconds < 2.0
    # After the clear (and the frame already playing) nothing of it: the only sound
    # is the answer to the interruption.
    assert {round(a.freq, -1) for a in segments(after)} == {2000}
    assert db(band_level(after, 1000, 8000) / level) <= -60
    # Marks the clear echoed (if one was pending: the bridge marks turn ends and exits,
    # not progress) were discarded audio, not played audio.
    at_clear = [m for m in report.marks if m.at_ms == report.clear_times_ms[0]]
    assert not any(m.played for m in at_clear)
    assert all(m.played for m in report.marks if m.at_ms < report.clear_times_ms[0])

    assert s.fake is not None
    (session,) = s.fake.sessions
    assert session.interruptions == 1
    record = await call_record(s, report.call_sid)
    assert len(record["interruptions"]) == 1
    # The recording keeps only what the caller heard: after the clear, only the answer.
    agent = (await recording(s, report.call_sid))[:, 1]
    assert {round(a.freq, -1) for a in segments(agent[cleared_at + FRAME :])} == {2000}


# --- greeting and pre-warm --------------------------------------------------------------


async def test_greeting_plays_first(stack: StackFactory) -> None:
    # The default greeting (speech, 4.1 s); the caller's words are only a transcript.
    s = await stack({"default_reply": {"clip": None, "caller_text": "Hello?"}})
    report = await simulate_call(
        call_options(s, tone(400, 0.3), wait_for_greeting_seconds=8, listen_seconds=0.5)
    )
    assert report.error is None, report.error

    caller_starts = round(report.utterance_ends_ms[0] * 8) - tone(400, 0.3).size
    assert report.first_audio_ms is not None
    assert report.first_audio_ms * 8 < caller_starts
    heard_first = report.heard[:caller_starts]
    greeting = load_clip("greeting", 8000)
    score, _ = best_match(heard_first, greeting)
    assert score > 0.9  # the greeting clip, through both resamplers and mu-law
    assert heard_in_full(heard_first, greeting)

    assert s.fake is not None
    # The greeting was asked for by the server (its prompt), not by caller audio.
    assert s.fake.sessions[0].texts[0] == s.settings.greeting
    record = await call_record(s, report.call_sid)
    first, second = record["transcript"][:2]
    assert (first["side"], first["text"]) == ("agent", clip_text("greeting"))
    assert second["side"] == "caller" and second["at_s"] > first["at_s"]


async def test_prewarm_opens_live_at_the_webhook(stack: StackFactory) -> None:
    s = await stack({"greeting": {"clip": "tone:1000:0.5"}, "default_reply": QUIET})
    assert s.fake is not None
    options = call_options(s, silence(0.1), wait_for_greeting_seconds=2)
    # The webhook alone opens Live and asks for the greeting, before any stream exists.
    await ring(s, options)
    (session,) = s.fake.sessions
    assert session.texts == [s.settings.greeting]

    # Now the stream.
    started: list[float] = []
    options.on_event = lambda kind, _: started.append(time.monotonic()) if kind == "start" else None
    report = await simulate_call(options)
    assert report.error is None, report.error

    # The stream adopted the pre-warmed session: no second connection, no second setup,
    # and the greeting it had ready was the first thing heard.
    assert len(s.fake.sessions) == 1
    (setup_done,) = [t for t, name in session.events if name == "setup_complete"]
    assert setup_done < started[0]
    assert session.texts == [s.settings.greeting]
    assert report.first_audio_ms is not None
    assert heard_in_full(report.heard, tone(1000, 0.5))
    assert abs(peak_frequency(report.heard, 8000) - 1000) <= 5


# --- Live trouble -----------------------------------------------------------------------


async def test_go_away_mid_call_continues_the_same_conversation(stack: StackFactory) -> None:
    s = await stack(
        {
            "greeting": {"clip": "tone:1000:0.4"},
            "turns": [
                {"caller_text": "first question", "clip": "tone:1500:0.6"},
                {"caller_text": "second question", "clip": "tone:2500:0.6"},
            ],
            "default_reply": QUIET,
            # After the greeting and the first answer: goAway, closed 1 s later.
            "faults": {"go_away_after_turns": 2, "go_away_time_left": 1.0},
        }
    )
    report = await simulate_call(
        call_options(
            s,
            tone(400, 0.4),
            follow_up=tone(600, 0.4),
            wait_for_greeting_seconds=3,
            listen_seconds=1.5,
        )
    )
    assert report.error is None, report.error
    assert report.ended_by == "caller_hangup"

    assert s.fake is not None
    first, second = s.fake.sessions
    assert "go_away" in first.event_names()
    assert second.resumption_handle == first.handles_sent[-1]
    assert second.resumed and second.conversation_id == first.conversation_id
    # The follow-up went to the new connection and got the next scripted answer.
    assert abs(peak_frequency(second.audio_array(), 16_000) - 600) <= 10
    follow_up_end = round(report.utterance_ends_ms[1] * 8)
    assert (
        db(band_level(report.heard[follow_up_end:], 2500, 8000) / tone_rms("tone:2500:0.6")) > -10
    )
    conversation = s.fake.conversations[second.conversation_id or ""]
    said = [line.text for line in conversation.transcript if line.role == "caller"]
    assert said == ["first question", "second question"]

    record = await call_record(s, report.call_sid)
    assert [r["reason"] for r in record["reconnects"]] == ["goaway"]
    assert record["end_reason"] == "caller_hangup"


async def test_refused_setup_plays_apology_and_hangs_up(stack: StackFactory) -> None:
    s = await stack({"refuse_setup": {"code": 1011, "reason": "Internal error encountered."}})
    report = await simulate_call(call_options(s, silence(0.1), listen_seconds=15))
    assert report.error is None, report.error
    assert report.ended_by == "server_closed"
    assert report.close_code == 1000

    apology = load_clip_8k("apology")
    score, _ = best_match(report.heard, apology)
    assert score > 0.9
    assert heard_in_full(report.heard, apology)
    # The stream closed once the apology had been heard, not before.
    assert report.duration_ms >= apology.size / 8

    assert s.fake is not None
    assert [r.ended for r in s.fake.sessions] == ["refused"]
    record = await call_record(s, report.call_sid)
    assert record["end_reason"] == "live_failed"
