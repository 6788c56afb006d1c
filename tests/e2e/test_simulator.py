"""Issue 4: the Twilio caller simulator against the real server, over real sockets.

Concurrent calls stay apart (each has its own Live session, recording and record), and
a barge-in looks from the caller's side as it does on a real phone.
"""

from __future__ import annotations

import json

import numpy as np

from app.assets import load_clip_8k
from app.dev.fakes.live.clips import load_clip
from app.dev.fakes.twilio_caller import simulate_call, simulate_calls
from tests.e2e.conftest import StackFactory, call_options, call_record, recording
from tests.e2e.measure import (
    band_level,
    best_match,
    concat,
    db,
    peak_frequency,
    segments,
    silence,
    tone,
)

CALLER_TONES = (300.0, 450.0, 600.0, 750.0, 900.0)


async def test_five_concurrent_calls_each_complete_with_their_own_audio(
    stack: StackFactory,
) -> None:
    s = await stack(
        {"greeting": {"clip": "tone:1000:0.4"}, "default_reply": {"clip": "tone:2000:0.4"}}
    )
    options = [
        call_options(s, tone(freq, 0.5), wait_for_greeting_seconds=3, listen_seconds=1.2)
        for freq in CALLER_TONES
    ]
    reports = await simulate_calls(options)

    assert len({r.call_sid for r in reports}) == len(CALLER_TONES)
    for report in reports:
        assert report.error is None, report.error
        assert report.ended_by == "caller_hangup"
        # Each caller heard the greeting, then (after speaking) the answer, both whole.
        heard = segments(report.heard)
        assert [round(h.freq, -1) for h in heard] == [1000, 2000]
        assert all(abs(h.seconds - 0.4) <= 0.06 for h in heard)
        assert heard[1].start > report.utterance_ends_ms[0] * 8

    # One Live session per call, each hearing only its own caller.
    assert s.fake is not None
    heard_by_live = sorted(
        round(peak_frequency(session.audio_array(), 16_000)) for session in s.fake.sessions
    )
    assert heard_by_live == [round(f) for f in CALLER_TONES]

    for freq, report in zip(CALLER_TONES, reports, strict=True):
        record = await call_record(s, report.call_sid)
        assert record["call_sid"] == report.call_sid
        assert record["end_reason"] == "caller_hangup"
        caller = (await recording(s, report.call_sid))[:, 0]
        assert abs(peak_frequency(caller, 8000) - freq) <= 5
        for other in CALLER_TONES:
            if other != freq:  # no cross-talk from the other calls
                assert db(band_level(caller, other, 8000) / band_level(caller, freq, 8000)) < -40
        # The caller channel is what this caller sent, sample for sample.
        n = min(caller.size, report.sent.size)
        assert n >= report.sent.size - 320
        assert np.array_equal(caller[:n], report.sent[:n])


async def test_barge_in_seen_by_the_caller(stack: StackFactory) -> None:
    s = await stack({"default_reply": {"clip": "reply_generic", "caller_text": "Goodbye."}})
    greeting = load_clip("greeting", 8000)
    # The caller talks over the 4.1 s greeting one second in.
    speech = load_clip_8k("caller_goodbye")
    report = await simulate_call(call_options(s, concat(silence(1.0), speech), listen_seconds=3.5))
    assert report.error is None, report.error
    assert report.ended_by == "caller_hangup"

    assert report.clears == 1
    cleared_at = round(report.clear_times_ms[0] * 8)
    # The greeting was playing and was cut short: its start was heard, not all of it.
    score, _ = best_match(report.heard[:cleared_at], greeting[: cleared_at // 2])
    assert score > 0.9
    assert report.first_audio_ms is not None and report.first_audio_ms < 1000
    # Every mark the clear echoed was discarded audio; every other one was played.
    for mark in report.marks:
        assert mark.played == (mark.at_ms != report.clear_times_ms[0]), mark
    # The agent answered once the caller had finished, with its whole reply.
    (latency,) = report.response_latencies_ms
    assert latency is not None and latency > 0
    reply = load_clip("reply_generic", 8000)
    answer = report.heard[round(report.utterance_ends_ms[0] * 8) :]
    score, _ = best_match(answer, reply)
    assert score > 0.9

    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["clears"] == 1 and summary["call_sid"] == report.call_sid
    record = await call_record(s, report.call_sid)
    assert len(record["interruptions"]) == 1
    assert [line["side"] for line in record["transcript"]] == ["agent", "caller", "agent"]
