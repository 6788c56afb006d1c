"""Issue 5: tools through the fake Live server, over real sockets.

The model's tool calls travel as real `toolCall` frames through google-genai into the
server's dispatcher; hang-ups and transfers reach the fake Twilio REST API; tool state
lands in real Redis where another instance can read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.call.state import RedisStateStore
from app.dev.fakes.live.clips import load_clip
from app.dev.fakes.twilio_caller import simulate_call
from tests.e2e.conftest import FakeTwilio, StackFactory, call_options, call_record
from tests.e2e.measure import best_match, concat, heard_in_full, segments, silence, tone

GREETING = {"clip": "tone:1000:0.4"}
QUIET = {"clip": None}
ALLOWED = "+15550100"
GOODBYE_RESULT = "The call will end after your goodbye has been played."


def end_call(expect: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "end_call", "args": {"reason": "caller said goodbye"}, "expect": expect}


def transfer_call(number: str) -> dict[str, Any]:
    args = {"number": number, "announcement": "Connecting you to a person."}
    return {"name": "transfer_call", "args": args}


class RestWatch:
    """Simulator event hook: how many REST updates the fake Twilio had at each mark echo."""

    def __init__(self, twilio: FakeTwilio, call_sid: str) -> None:
        self._twilio, self._sid = twilio, call_sid
        self.at_marks: dict[str, int] = {}

    def __call__(self, kind: str, detail: Mapping[str, Any]) -> None:
        if kind == "mark":
            self.at_marks[str(detail["name"])] = len(self._twilio.state.calls[self._sid].updates)


async def test_end_call_hangs_up_only_after_the_goodbye(
    stack: StackFactory, fake_twilio: FakeTwilio
) -> None:
    s = await stack(
        {
            "greeting": GREETING,
            "turns": [
                {
                    "caller_text": "That's all, goodbye.",
                    "tool_calls": [end_call(expect={"result": GOODBYE_RESULT})],
                    "clip": "goodbye",
                }
            ],
        },
        **fake_twilio.settings(),
    )
    options = call_options(s, tone(400, 0.4), wait_for_greeting_seconds=3, listen_seconds=8)
    fake_twilio.state.add_call(options.call_sid)
    options.on_event = watch = RestWatch(fake_twilio, options.call_sid)
    report = await simulate_call(options)
    assert report.error is None, report.error

    # The server ended the call, after the caller had heard the whole goodbye.
    assert report.ended_by == "server_closed"
    goodbye = load_clip("goodbye", 8000)
    answer = report.heard[round(report.utterance_ends_ms[0] * 8) :]
    score, _ = best_match(answer, goodbye)
    assert score > 0.9
    assert heard_in_full(answer, goodbye)
    # The hang-up waited for the mark behind the goodbye to be played, not discarded.
    (exit_mark,) = [m for m in report.marks if m.name.startswith("exit")]
    assert exit_mark.played
    assert watch.at_marks[exit_mark.name] == 0  # no REST hang-up before it was heard
    assert fake_twilio.state.calls[options.call_sid].updates == [{"Status": "completed"}]

    assert s.fake is not None
    (check,) = s.fake.sessions[0].tool_checks
    assert (check.name, check.outcome, check.passed) == ("end_call", "answered", True)
    record = await call_record(s, report.call_sid)
    assert record["end_reason"] == "agent_hangup"
    assert [t["name"] for t in record["tool_calls"]] == ["end_call"]


async def test_caller_interrupting_the_goodbye_keeps_the_call(
    stack: StackFactory, fake_twilio: FakeTwilio
) -> None:
    s = await stack(
        {
            "greeting": GREETING,
            "turns": [
                {"caller_text": "Goodbye.", "tool_calls": [end_call()], "clip": "goodbye"},
                {"caller_text": "Wait, one more thing!", "clip": "tone:2000:0.5"},
            ],
            "default_reply": QUIET,
        },
        **fake_twilio.settings(),
    )
    # "Goodbye", then, about a second into the agent's 2.3 s goodbye, "wait!".
    caller = concat(tone(400, 0.4), silence(1.6), tone(600, 0.5))
    options = call_options(s, caller, wait_for_greeting_seconds=3, listen_seconds=2.5)
    fake_twilio.state.add_call(options.call_sid)
    report = await simulate_call(options)
    assert report.error is None, report.error

    assert report.clears == 1
    assert report.ended_by == "caller_hangup"  # the server did not hang up on them
    cleared_at = round(report.clear_times_ms[0] * 8)
    goodbye = load_clip("goodbye", 8000)
    cut = report.heard[round(report.utterance_ends_ms[0] * 8) - 16_000 : cleared_at]
    assert not heard_in_full(cut, goodbye)
    # The conversation went on: the next answer was heard after the interruption.
    after = segments(report.heard[cleared_at + 160 :])  # past the frame already playing
    assert [round(a.freq, -1) for a in after] == [2000]
    assert not [m for m in report.marks if m.name.startswith("exit")]
    assert fake_twilio.state.calls[options.call_sid].updates == []

    record = await call_record(s, report.call_sid)
    assert record["end_reason"] == "caller_hangup"
    assert [t["name"] for t in record["tool_calls"]] == ["end_call"]
    assert len(record["interruptions"]) == 1


async def test_transfer_redirects_the_call_after_the_handoff(
    stack: StackFactory, fake_twilio: FakeTwilio
) -> None:
    s = await stack(
        {
            "greeting": GREETING,
            "turns": [
                {
                    "caller_text": "Can I talk to a person?",
                    "tool_calls": [
                        {
                            **transfer_call(ALLOWED),
                            "expect": {"result": f"Transferring the caller to {ALLOWED}."},
                        }
                    ],
                    "clip": "tone:1200:1.0",  # the handoff line
                }
            ],
        },
        transfer_allowlist=ALLOWED,
        **fake_twilio.settings(),
    )
    options = call_options(s, tone(400, 0.4), wait_for_greeting_seconds=3, listen_seconds=6)
    fake_twilio.state.add_call(options.call_sid)
    options.on_event = watch = RestWatch(fake_twilio, options.call_sid)
    report = await simulate_call(options)
    assert report.error is None, report.error

    # The whole handoff line was heard, and only then did the REST update go out.
    handoff = segments(report.heard[round(report.utterance_ends_ms[0] * 8) :])
    assert [(round(h.freq, -1), round(h.seconds, 1)) for h in handoff] == [(1200, 1.0)]
    (exit_mark,) = [m for m in report.marks if m.name.startswith("exit")]
    assert exit_mark.played and watch.at_marks[exit_mark.name] == 0
    (update,) = fake_twilio.state.calls[options.call_sid].updates
    assert report.ended_by == "server_closed"  # the stream is done; Twilio follows the TwiML
    assert f"<Dial>{ALLOWED}</Dial>" in update["Twiml"]
    assert "<Say>Connecting you to a person.</Say>" in update["Twiml"]

    assert s.fake is not None
    (check,) = s.fake.sessions[0].tool_checks
    assert check.passed, check
    record = await call_record(s, report.call_sid)
    assert record["end_reason"] == "transferred"


async def test_transfer_to_a_number_off_the_allow_list_is_refused(
    stack: StackFactory, fake_twilio: FakeTwilio
) -> None:
    s = await stack(
        {
            "greeting": GREETING,
            "turns": [
                {
                    "caller_text": "Put me through to 555 0199.",
                    "tool_calls": [transfer_call("+15550199")],
                    "clip": "tone:1200:0.5",  # "sorry, I can't"
                }
            ],
            "default_reply": QUIET,
        },
        transfer_allowlist=ALLOWED,
        **fake_twilio.settings(),
    )
    options = call_options(s, tone(400, 0.4), wait_for_greeting_seconds=3, listen_seconds=2)
    fake_twilio.state.add_call(options.call_sid)
    report = await simulate_call(options)
    assert report.error is None, report.error

    assert s.fake is not None
    (check,) = s.fake.sessions[0].tool_checks
    assert check.name == "transfer_call" and check.outcome == "answered"
    assert check.response is not None and "result" not in check.response
    assert "not allowed" in check.response["error"] and ALLOWED in check.response["error"]
    # Nothing was dialled; the call went on until the caller hung up.
    assert fake_twilio.state.calls[options.call_sid].updates == []
    assert report.ended_by == "caller_hangup"
    record = await call_record(s, report.call_sid)
    assert record["end_reason"] == "caller_hangup"
    (tool_call,) = record["tool_calls"]
    assert tool_call["name"] == "transfer_call" and tool_call["ok"] is False


async def test_tool_state_is_visible_in_redis_to_another_instance(
    stack: StackFactory, redis_url: str
) -> None:
    booking = {"day": "tuesday", "time": "10:00", "name": "Alex"}
    s = await stack(
        {
            "greeting": GREETING,
            "turns": [
                {
                    "caller_text": "Book me for Tuesday at ten, I'm Alex.",
                    "tool_calls": [
                        {"name": "book_appointment", "args": booking, "expect": {"result": booking}}
                    ],
                    "clip": "tone:1200:0.5",
                }
            ],
            "default_reply": QUIET,
        },
        redis_url=redis_url,
        tools="appointments",
    )
    options = call_options(s, tone(400, 0.4), wait_for_greeting_seconds=3, listen_seconds=1.5)
    report = await simulate_call(options)
    assert report.error is None, report.error
    assert s.fake is not None
    (check,) = s.fake.sessions[0].tool_checks
    assert check.passed, check
    await call_record(s, report.call_sid)

    # Another instance of the service, with its own connection to the same Redis.
    other = RedisStateStore(redis_url, ttl_seconds=60)
    try:
        state = await other.load(report.call_sid)
        assert state["appointments"]["items"]["A1"] == {"id": "A1", **booking}
        assert state["call_sid"] == report.call_sid  # seeded call facts, same hash
        assert state["from_number"] == options.from_number
    finally:
        await other.delete(report.call_sid)
        await other.aclose()
