"""When the agent's turn is over and when the call may hang up: one call's turn/exit policy.

Pure (no I/O, no asyncio, the time passed in as monotonic seconds), in the shape of h11's
state machines: an explicit state, every event checked against `TRANSITIONS`, an event a
state cannot take raises `IllegalTransition`. The bridge feeds it what happened (agent
audio queued, turn complete, barge-in, a tool asking to hang up, a notice of ours, a mark
echoed, a clock tick, a caller frame) and performs the actions it returns.

Why it waits as it does (protocol facts, shared/protocols.md):
- `end_call` usually comes before or during the model's goodbye: the call ends once the
  goodbye has been *heard*, which only an echoed `mark` sent after it proves. So the exit
  mark goes out once the model's turn is over and nothing is queued, after a short grace
  in case the goodbye has not started yet.
- A caller talking over the goodbye (`interrupted`) means the conversation goes on: the
  exit is cancelled. Our own notices (the apology, the drain notice) play out regardless.
- A mark echoed after a `clear` was discarded, not played: the exit waits for a new one.
- If no echo ever comes, a fallback deadline ends the call anyway.
- Under automatic VAD the model should hear that caller input paused (a stalled stream),
  or it may wait for more speech: one `audioStreamEnd` per pause.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.call.info import EndReason


class State(StrEnum):
    LISTENING = "listening"  # no agent turn streaming, no exit pending
    AGENT_SPEAKING = "agent_speaking"  # the model's turn is streaming
    GOODBYE = "goodbye"  # exit pending; the model's turn is over
    GOODBYE_SPEAKING = "goodbye_speaking"  # exit pending; the goodbye is streaming
    EXIT_MARK_SENT = "exit_mark_sent"  # exit pending; waiting for the exit mark's echo
    NOTICE = "notice"  # a notice of ours plays, then the call ends; nothing cancels it
    NOTICE_MARK_SENT = "notice_mark_sent"  # the notice's exit mark is out
    ENDED = "ended"  # the exit was handed to the bridge


class Event(StrEnum):
    AGENT_AUDIO = "agent_audio"
    TURN_COMPLETE = "turn_complete"
    RECONNECTED = "reconnected"
    INTERRUPTED = "interrupted"
    EXIT_REQUESTED = "exit_requested"
    NOTICE_STARTED = "notice_started"
    EXIT_MARK_SENT = "exit_mark_sent"
    EXIT_MARK_PLAYED = "exit_mark_played"
    EXIT_MARK_DISCARDED = "exit_mark_discarded"
    DEADLINE = "deadline"  # the fallback: no echo came in time


class Action(StrEnum):
    """What a tick asks the bridge to do."""

    END_INPUT = "end_input"  # send Live `audioStreamEnd`
    SEND_EXIT_MARK = "send_exit_mark"  # queue the exit mark, then `exit_mark_sent(name)`
    EXIT_FALLBACK = "exit_fallback"  # perform `policy.exit` now: no echo came in time


class IllegalTransition(Exception):
    """The bridge fed an event the current state cannot take: a bug in the bridge."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"{event.value} in state {state.value}")
        self.state = state
        self.event = event


S, E = State, Event
_EXIT_PENDING = (S.GOODBYE, S.GOODBYE_SPEAKING, S.EXIT_MARK_SENT)
_STREAMING = (S.AGENT_SPEAKING, S.GOODBYE_SPEAKING)  # a model turn's audio is arriving
_NOTICE = (S.NOTICE, S.NOTICE_MARK_SENT)


def _table() -> dict[tuple[State, Event], State]:
    table: dict[tuple[State, Event], State] = {}
    for state in S:
        # Whatever else happens, one of our notices takes over (ENDED: nothing left to say).
        table[state, E.NOTICE_STARTED] = S.ENDED if state is S.ENDED else S.NOTICE
        # Audio after the exit mark is cut by the exit; a notice drops it; so do these.
        for event in (E.AGENT_AUDIO, E.TURN_COMPLETE, E.RECONNECTED):
            table[state, event] = state
        # A barge-in ends the agent's turn and cancels a pending exit, never a notice.
        table[state, E.INTERRUPTED] = state if state in (*_NOTICE, S.ENDED) else S.LISTENING
        # A second request updates the pending exit; a notice or an ended call ignores it.
        table[state, E.EXIT_REQUESTED] = state
        if state in (*_EXIT_PENDING, *_NOTICE):
            table[state, E.DEADLINE] = S.ENDED
    table[S.LISTENING, E.AGENT_AUDIO] = S.AGENT_SPEAKING
    table[S.AGENT_SPEAKING, E.TURN_COMPLETE] = S.LISTENING
    table[S.AGENT_SPEAKING, E.RECONNECTED] = S.LISTENING
    table[S.LISTENING, E.EXIT_REQUESTED] = S.GOODBYE
    table[S.AGENT_SPEAKING, E.EXIT_REQUESTED] = S.GOODBYE_SPEAKING
    table[S.GOODBYE, E.AGENT_AUDIO] = S.GOODBYE_SPEAKING
    table[S.GOODBYE_SPEAKING, E.TURN_COMPLETE] = S.GOODBYE
    table[S.GOODBYE_SPEAKING, E.RECONNECTED] = S.GOODBYE
    table[S.GOODBYE, E.EXIT_MARK_SENT] = S.EXIT_MARK_SENT
    table[S.EXIT_MARK_SENT, E.EXIT_MARK_PLAYED] = S.ENDED
    table[S.EXIT_MARK_SENT, E.EXIT_MARK_DISCARDED] = S.GOODBYE
    table[S.NOTICE, E.EXIT_MARK_SENT] = S.NOTICE_MARK_SENT
    table[S.NOTICE_MARK_SENT, E.EXIT_MARK_PLAYED] = S.ENDED
    table[S.NOTICE_MARK_SENT, E.EXIT_MARK_DISCARDED] = S.NOTICE
    return table


# Every (state, event) the policy accepts, and the state it leads to. Anything else is
# an `IllegalTransition` (e.g. an exit mark sent while the agent is still speaking).
TRANSITIONS: dict[tuple[State, Event], State] = _table()


@dataclass(slots=True)
class Exit:
    """A pending hang-up or transfer: performed once the goodbye has been heard."""

    reason: EndReason
    requested_at: float
    deadline: float  # the fallback: performed at this time even without an echo
    transfer_to: str | None = None
    announcement: str | None = None
    mark: str | None = None  # the exit mark in flight


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The caller talked over the agent: clear its audio (and maybe a pending exit)."""

    cancelled_exit: Exit | None


class CallPolicy:
    """The turn/exit policy of one call. Times are monotonic seconds, passed in."""

    def __init__(
        self,
        *,
        goodbye_grace_s: float = 1.5,
        fallback_s: float = 10.0,
        input_pause_s: float = 1.0,
    ) -> None:
        self.state = State.LISTENING
        self.exit: Exit | None = None
        self._grace = goodbye_grace_s
        self._fallback = fallback_s
        self._input_pause = input_pause_s
        self._turn_mark_wanted = False
        self._last_agent_audio = 0.0
        self._last_frame_at: float | None = None
        self._stream_end_sent = False
        self._speech_end: float | None = None  # end of the caller's last loud frame

    def _go(self, event: Event) -> State:
        key = (self.state, event)
        if key not in TRANSITIONS:
            raise IllegalTransition(self.state, event)
        self.state = TRANSITIONS[key]
        return self.state

    @property
    def closing(self) -> bool:
        """A notice of ours is playing (or the call has ended): agent audio is dropped."""
        return self.state in _NOTICE or self.state is S.ENDED

    # --- the caller --------------------------------------------------------------------
    def caller_frame(self, now: float, loud: bool) -> None:
        """One caller frame went to Live (every 20 ms: bookkeeping only)."""
        self._last_frame_at = now
        self._stream_end_sent = False
        if loud:
            self._speech_end = now

    # --- the model ---------------------------------------------------------------------
    def agent_audio(self, now: float) -> float | None:
        """Agent audio was queued. Returns the response latency (end of the caller's
        speech -> this audio) for the first audio of a turn after the caller spoke, else
        None. Audio further into a turn is no response: with both talking at once, every
        chunk would otherwise count as one, a few ms after the caller's latest frame."""
        streaming = self.state in _STREAMING
        self._go(E.AGENT_AUDIO)
        self._last_agent_audio = now
        if self._speech_end is None or streaming:
            return None
        latency, self._speech_end = now - self._speech_end, None
        return latency

    def turn_complete(self) -> None:
        self._go(E.TURN_COMPLETE)
        self._turn_mark_wanted = True

    def generation_complete(self) -> None:
        """The model finished generating (its turn may go on, e.g. for a tool call)."""
        self._turn_mark_wanted = True

    def reconnected(self) -> None:
        self._go(E.RECONNECTED)

    def take_turn_mark(self) -> bool:
        """Asked once playback has nothing queued: True (once) when a turn mark is due."""
        wanted, self._turn_mark_wanted = self._turn_mark_wanted, False
        return wanted

    def interrupted(self) -> BargeIn | None:
        """Live says the caller barged in. None: a notice plays on, nothing to clear."""
        if self.closing:
            self._go(E.INTERRUPTED)
            return None
        cancelled = self.exit if self.state in _EXIT_PENDING else None
        self._go(E.INTERRUPTED)
        self._turn_mark_wanted = False
        if cancelled is not None:
            self.exit = None
        return BargeIn(cancelled)

    # --- hanging up --------------------------------------------------------------------
    def request_exit(
        self,
        reason: EndReason,
        now: float,
        transfer_to: str | None = None,
        announcement: str | None = None,
    ) -> bool:
        """A tool asked to hang up or transfer. False when a notice or the end came first."""
        before = self.state
        self._go(E.EXIT_REQUESTED)
        if before in _NOTICE or before is S.ENDED:
            return False
        mark = self.exit.mark if self.exit is not None else None
        self.exit = Exit(reason, now, now + self._fallback, transfer_to, announcement, mark)
        return True

    def notice_started(
        self, reason: EndReason, now: float, fallback_s: float | None = None
    ) -> bool:
        """A notice of ours (apology, drain) plays, then the call ends with `reason`.
        False when the call has ended already."""
        if self._go(E.NOTICE_STARTED) is S.ENDED:
            return False
        deadline = now + (self._fallback if fallback_s is None else fallback_s)
        self.exit = Exit(reason, now, deadline)
        return True

    def exit_mark_sent(self, name: str) -> None:
        """The bridge queued the exit mark `name` (noted before it can echo)."""
        self._go(E.EXIT_MARK_SENT)
        assert self.exit is not None  # every state that takes this event has an exit
        self.exit.mark = name

    def mark_echoed(self, name: str, played: bool) -> Exit | None:
        """Twilio echoed a mark. Returns the exit to perform when it was the exit mark
        and its audio was played; a discarded exit mark is sent again later."""
        if self.exit is None or self.exit.mark != name:
            return None
        if not played:
            self._go(E.EXIT_MARK_DISCARDED)
            self.exit.mark = None
            return None
        self._go(E.EXIT_MARK_PLAYED)
        return self.exit

    def tick(self, now: float, audio_queued: bool) -> list[Action]:
        """The clock moved (or something the policy waits on happened)."""
        actions: list[Action] = []
        idle = None if self._last_frame_at is None else now - self._last_frame_at
        if idle is not None and idle > self._input_pause and not self._stream_end_sent:
            self._stream_end_sent = True
            actions.append(Action.END_INPUT)
        pending = self.exit
        if pending is None or self.state is S.ENDED:
            return actions
        if now > pending.deadline:
            self._go(E.DEADLINE)
            actions.append(Action.EXIT_FALLBACK)
        elif self.state is S.NOTICE and not audio_queued:
            actions.append(Action.SEND_EXIT_MARK)
        elif self.state is S.GOODBYE and not audio_queued:
            quiet_since = max(pending.requested_at, self._last_agent_audio)
            if now - quiet_since >= self._grace:
                actions.append(Action.SEND_EXIT_MARK)
        return actions

    def next_deadline(self) -> float | None:
        """When the fallback fires, if an exit is pending."""
        return None if self.exit is None or self.state is S.ENDED else self.exit.deadline
