"""The turn/exit policy, event by event over an injected clock: no event loop, no sleeps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.call.info import EndReason
from app.call.policy import (
    TRANSITIONS,
    Action,
    CallPolicy,
    Event,
    IllegalTransition,
    State,
)

GRACE, FALLBACK, PAUSE = 1.5, 10.0, 1.0


def policy() -> CallPolicy:
    return CallPolicy(goodbye_grace_s=GRACE, fallback_s=FALLBACK, input_pause_s=PAUSE)


# How to bring a fresh policy into each state (at t = 0), by its public events only.
REACH: dict[State, Callable[[CallPolicy], object]] = {
    State.LISTENING: lambda p: None,
    State.AGENT_SPEAKING: lambda p: p.agent_audio(0.0),
    State.GOODBYE: lambda p: p.request_exit(EndReason.AGENT_HANGUP, 0.0),
    State.GOODBYE_SPEAKING: lambda p: (
        p.agent_audio(0.0),
        p.request_exit(EndReason.AGENT_HANGUP, 0.0),
    ),
    State.EXIT_MARK_SENT: lambda p: (
        p.request_exit(EndReason.AGENT_HANGUP, 0.0),
        p.exit_mark_sent("exit-1"),
    ),
    State.NOTICE: lambda p: p.notice_started(EndReason.SHUTDOWN, 0.0),
    State.NOTICE_MARK_SENT: lambda p: (
        p.notice_started(EndReason.SHUTDOWN, 0.0),
        p.exit_mark_sent("exit-1"),
    ),
    State.ENDED: lambda p: (
        p.request_exit(EndReason.AGENT_HANGUP, 0.0),
        p.exit_mark_sent("exit-1"),
        p.mark_echoed("exit-1", played=True),
    ),
}

# Each event through the policy's public methods (t = 1 s, before any deadline).
FIRE: dict[Event, Callable[[CallPolicy], object]] = {
    Event.AGENT_AUDIO: lambda p: p.agent_audio(1.0),
    Event.TURN_COMPLETE: lambda p: p.turn_complete(),
    Event.RECONNECTED: lambda p: p.reconnected(),
    Event.INTERRUPTED: lambda p: p.interrupted(),
    Event.EXIT_REQUESTED: lambda p: p.request_exit(EndReason.TRANSFERRED, 1.0, "+1555"),
    Event.NOTICE_STARTED: lambda p: p.notice_started(EndReason.LIVE_FAILED, 1.0),
    Event.EXIT_MARK_SENT: lambda p: p.exit_mark_sent("exit-2"),
    Event.EXIT_MARK_PLAYED: lambda p: p.mark_echoed("exit-1", played=True),
    Event.EXIT_MARK_DISCARDED: lambda p: p.mark_echoed("exit-1", played=False),
    Event.DEADLINE: lambda p: p.tick(FALLBACK + 1.0, audio_queued=True),
}


def test_every_state_is_reachable_and_every_event_can_be_fired() -> None:
    # Guards the table test below against passing over an incomplete fixture.
    assert set(REACH) == set(State) and set(FIRE) == set(Event)
    for state, reach in REACH.items():
        p = policy()
        reach(p)
        assert p.state is state


# Marks only reach the table when they name the pending exit mark; the fallback only
# when an exit is pending. Elsewhere these are no-ops by design, not transitions.
def _applies(state: State, event: Event) -> bool:
    if event in (Event.EXIT_MARK_PLAYED, Event.EXIT_MARK_DISCARDED):
        return state in (State.EXIT_MARK_SENT, State.NOTICE_MARK_SENT)
    if event is Event.DEADLINE:
        return state not in (State.LISTENING, State.AGENT_SPEAKING, State.ENDED)
    return True


CASES = [(s, e) for s in State for e in Event if _applies(s, e)]


@pytest.mark.parametrize(("state", "event"), CASES, ids=[f"{s}-{e}" for s, e in CASES])
def test_transition_table(state: State, event: Event) -> None:
    p = policy()
    REACH[state](p)
    expected = TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition) as raised:
            FIRE[event](p)
        assert (raised.value.state, raised.value.event) == (state, event)
        assert p.state is state  # an illegal event changes nothing
    else:
        FIRE[event](p)
        assert p.state is expected


def test_the_table_names_the_transitions_that_matter() -> None:
    t = TRANSITIONS
    assert t[State.GOODBYE_SPEAKING, Event.INTERRUPTED] is State.LISTENING  # exit cancelled
    assert t[State.NOTICE, Event.INTERRUPTED] is State.NOTICE  # a notice plays out
    assert (State.AGENT_SPEAKING, Event.EXIT_MARK_SENT) not in t  # never mid-goodbye
    assert (State.ENDED, Event.EXIT_MARK_SENT) not in t


# --- scenarios over the injected clock ----------------------------------------------------


def test_hang_up_waits_for_the_goodbye_then_its_mark_then_the_echo() -> None:
    p = policy()
    p.agent_audio(0.0)
    assert p.request_exit(EndReason.AGENT_HANGUP, 0.5)
    p.agent_audio(1.0)  # the goodbye streams
    assert p.tick(2.0, audio_queued=False) == []  # the model's turn is not over
    p.turn_complete()
    assert p.tick(2.0, audio_queued=True) == []  # the goodbye is still queued
    assert p.tick(2.4, audio_queued=False) == []  # within the grace after the last audio
    assert p.tick(2.5, audio_queued=False) == [Action.SEND_EXIT_MARK]
    p.exit_mark_sent("exit-7")
    assert p.tick(3.0, audio_queued=False) == []  # waiting for the echo, not a second mark
    assert p.mark_echoed("progress-3", played=True) is None
    pending = p.mark_echoed("exit-7", played=True)
    assert pending is not None and pending.reason is EndReason.AGENT_HANGUP
    assert p.state is State.ENDED


def test_goodbye_not_started_yet_gets_the_grace() -> None:
    p = policy()
    p.request_exit(EndReason.AGENT_HANGUP, 10.0)
    assert p.tick(10.0 + GRACE - 0.01, audio_queued=False) == []
    assert p.tick(10.0 + GRACE, audio_queued=False) == [Action.SEND_EXIT_MARK]


def test_barge_in_over_the_goodbye_cancels_the_exit() -> None:
    p = policy()
    p.request_exit(EndReason.AGENT_HANGUP, 0.0)
    p.agent_audio(0.2)
    barge_in = p.interrupted()
    assert barge_in is not None and barge_in.cancelled_exit is not None
    assert barge_in.cancelled_exit.reason is EndReason.AGENT_HANGUP
    assert p.exit is None and p.state is State.LISTENING
    assert p.tick(FALLBACK + 5, audio_queued=False) == []  # no fallback either


def test_barge_in_cancels_an_exit_whose_mark_is_out() -> None:
    p = policy()
    p.request_exit(EndReason.AGENT_HANGUP, 0.0)
    p.exit_mark_sent("exit-1")
    barge_in = p.interrupted()
    assert barge_in is not None and barge_in.cancelled_exit is not None
    assert p.mark_echoed("exit-1", played=False) is None  # the clear's echo: ignored


def test_a_notice_is_not_interrupted_and_drops_agent_audio() -> None:
    p = policy()
    p.agent_audio(0.0)
    assert p.notice_started(EndReason.LIVE_FAILED, 1.0, fallback_s=4.0)
    assert p.closing
    assert p.interrupted() is None
    assert not p.request_exit(EndReason.AGENT_HANGUP, 1.5)  # the notice already ends it
    assert p.exit is not None and p.exit.reason is EndReason.LIVE_FAILED
    # No grace: the mark goes once the clip is sent.
    assert p.tick(1.0, audio_queued=True) == []
    assert p.tick(1.1, audio_queued=False) == [Action.SEND_EXIT_MARK]


def test_the_fallback_ends_the_call_when_no_echo_comes() -> None:
    p = policy()
    p.notice_started(EndReason.LIVE_FAILED, 0.0, fallback_s=3.5)
    p.exit_mark_sent("exit-1")
    assert p.next_deadline() == 3.5
    assert p.tick(3.5, audio_queued=False) == []
    assert p.tick(3.6, audio_queued=False) == [Action.EXIT_FALLBACK]
    assert p.state is State.ENDED and p.next_deadline() is None
    assert p.tick(99.0, audio_queued=False) == []  # once


def test_a_discarded_exit_mark_is_sent_again() -> None:
    p = policy()
    p.request_exit(EndReason.AGENT_HANGUP, 0.0)
    p.exit_mark_sent("exit-1")
    assert p.mark_echoed("exit-1", played=False) is None
    assert p.state is State.GOODBYE
    assert p.tick(GRACE, audio_queued=False) == [Action.SEND_EXIT_MARK]


def test_a_second_request_updates_the_pending_exit() -> None:
    p = policy()
    p.request_exit(EndReason.AGENT_HANGUP, 0.0)
    p.exit_mark_sent("exit-1")
    p.request_exit(EndReason.TRANSFERRED, 2.0, "+15550100", "Connecting you")
    assert p.exit is not None
    assert (p.exit.reason, p.exit.transfer_to, p.exit.mark) == (
        EndReason.TRANSFERRED,
        "+15550100",
        "exit-1",
    )
    assert p.next_deadline() == 2.0 + FALLBACK


def test_turn_mark_is_wanted_once_per_turn_and_not_after_a_barge_in() -> None:
    p = policy()
    p.agent_audio(0.0)
    p.turn_complete()
    assert p.take_turn_mark() and not p.take_turn_mark()
    p.agent_audio(1.0)
    p.generation_complete()
    p.interrupted()
    assert not p.take_turn_mark()


def test_response_latency_is_from_the_callers_last_loud_frame() -> None:
    p = policy()
    assert p.agent_audio(0.5) is None  # the greeting: nobody spoke yet
    p.turn_complete()
    p.caller_frame(1.0, loud=True)
    p.caller_frame(1.02, loud=True)
    p.caller_frame(1.04, loud=False)
    assert p.agent_audio(1.8) == pytest.approx(0.78)
    assert p.agent_audio(1.9) is None  # only the first audio of the answer


def test_talking_over_a_turn_is_no_response_until_the_next_turn() -> None:
    p = policy()
    p.agent_audio(0.5)
    for k in range(10):  # the caller talks over the agent (no barge-in: Live went on)
        p.caller_frame(0.6 + k * 0.02, loud=True)
        assert p.agent_audio(0.61 + k * 0.02) is None
    p.turn_complete()
    assert p.agent_audio(1.5) == pytest.approx(1.5 - 0.78)  # the next turn answers it


def test_input_pause_sends_one_stream_end_per_pause() -> None:
    p = policy()
    assert p.tick(50.0, audio_queued=False) == []  # no frame yet: nothing paused
    p.caller_frame(1.0, loud=False)
    assert p.tick(1.0 + PAUSE, audio_queued=False) == []
    assert p.tick(1.0 + PAUSE + 0.01, audio_queued=False) == [Action.END_INPUT]
    assert p.tick(5.0, audio_queued=False) == []
    p.caller_frame(6.0, loud=False)  # frames flow again: the next pause counts
    assert p.tick(7.5, audio_queued=False) == [Action.END_INPUT]
