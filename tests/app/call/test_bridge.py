"""CallBridge behaviour against in-memory peers with Twilio's and Live's semantics."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from app.call.bridge import CallBridge
from app.call.info import BridgeConfig, CallInfo, EndReason
from app.call.policy import State
from app.live.events import (
    AgentAudio,
    CallerTranscript,
    GoAway,
    Interrupted,
    ResumptionUpdate,
    ToolCall,
    TurnComplete,
)
from telephony.messages import OutboundMedia
from tests.app.call.bridge_fakes import FakeTwilioSocket, ScriptedConnector


def tone(seconds: float, rate: int, freq: float = 440.0, level: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def agent_audio(seconds: float, freq: float = 440.0) -> AgentAudio:
    return AgentAudio(tone(seconds, 24000, freq).tobytes())


def make_bridge(
    connector: ScriptedConnector,
    sock: FakeTwilioSocket,
    *,
    greeting: str | None = None,
    apology: np.ndarray | None = None,
    **config: float,
) -> CallBridge:
    return CallBridge(
        CallInfo(call_sid="CA" + "0" * 32, stream_sid=sock.stream_sid),
        sock,
        connector,
        config=BridgeConfig(greeting=greeting, **config),  # type: ignore[arg-type]
        apology=apology,
    )


async def until(predicate, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_caller_audio_reaches_live_at_16k() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock)
    run = asyncio.create_task(bridge.run(sock.messages()))
    sock.speak(tone(1.0, 8000, 1000.0))
    await until(lambda: connector.sessions and len(connector.sessions[0].audio) >= 50)
    sock.hang_up()
    assert await run is EndReason.CALLER_HANGUP
    pcm = np.frombuffer(b"".join(connector.sessions[0].audio), np.int16)
    assert pcm.size == 16000  # 1 s at 16 kHz, one chunk per 20 ms frame
    spectrum = np.abs(np.fft.rfft(pcm[2000:] * np.hanning(pcm.size - 2000)))
    peak_hz = np.argmax(spectrum) * 16000 / (pcm.size - 2000)
    assert abs(peak_hz - 1000) < 5
    assert connector.sessions[0].closed  # caller hang-up closes Live at once


async def test_agent_audio_is_paced_framed_and_heard_intact() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    session = connector.sessions[0]
    session.emit(agent_audio(1.0, 1000.0), TurnComplete())
    await until(lambda: sum(len(p) for _, p in sock.heard) >= 8000)
    await asyncio.sleep(1.1)
    sock.hang_up()
    await run
    messages = [p for _, p in sock.heard]
    # Whole 20 ms frames, several to a message once playback is ahead (fewer sends).
    assert all(len(m) % 160 == 0 for m in messages)
    assert sum(len(m) for m in messages) == 8000
    assert len(messages) < 50
    # Never more than ~200 ms (+ one frame) ahead of playback.
    sends = [t for t, m in sock.sent if type(m).__name__ == "OutboundMedia"]
    starts = [t for t, _ in sock.heard]
    assert max(s - t for s, t in zip(starts, sends, strict=True)) <= 0.2 + 0.02 + 0.01
    heard = sock.heard_pcm().astype(float)
    spectrum = np.abs(np.fft.rfft(heard[400:] * np.hanning(heard.size - 400)))
    assert abs(np.argmax(spectrum) * 8000 / (heard.size - 400) - 1000) < 10


async def test_greeting_is_requested_first_unless_prewarmed() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock, greeting="Say hello")
    run = asyncio.create_task(bridge.run(sock.messages()))
    await until(lambda: connector.sessions and connector.sessions[0].texts)
    assert connector.sessions[0].texts == ["Say hello"]
    sock.hang_up()
    await run


async def test_barge_in_clears_at_once_and_no_stale_audio_follows() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    session = connector.sessions[0]
    session.emit(agent_audio(3.0))
    await asyncio.sleep(0.5)
    session.emit(Interrupted())
    await until(lambda: sock.clears())
    clear_at = sock.clears()[0]
    # More of the interrupted turn arriving late must not be played either.
    await asyncio.sleep(0.3)
    sock.hang_up()
    await run
    assert sock.media_after(clear_at) == 0
    # Only what was already playing when the clear came was heard, never the rest of
    # the 3 s turn (bounds generous: a loaded machine delays the interrupt, not the cut).
    heard_s = sum(len(p) for t, p in sock.heard) / 8000
    assert 0.2 < heard_s < 2.0
    assert bridge.stats.interruptions == 1
    # Marks echoed after the clear are counted as unplayed, not as heard.
    assert not bridge.playout.pending_marks


async def test_end_call_waits_for_the_goodbye_to_be_heard() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock, goodbye_grace_seconds=0.2)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    session = connector.sessions[0]
    await bridge.request_exit(EndReason.AGENT_HANGUP)
    session.emit(agent_audio(1.0), TurnComplete())
    reason = await asyncio.wait_for(run, 5)
    assert reason is EndReason.AGENT_HANGUP
    heard_s = sum(len(p) for _, p in sock.heard) / 8000
    assert heard_s == pytest.approx(1.0, abs=0.021)
    # The stream closed only once the last frame had been played.
    assert sock.closed is not None
    assert time.monotonic() >= max(t for t, _ in sock.heard) + 0.02 - 0.005


async def test_interrupting_the_goodbye_keeps_the_call_going() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock, goodbye_grace_seconds=0.2)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    session = connector.sessions[0]
    await bridge.request_exit(EndReason.AGENT_HANGUP)
    session.emit(agent_audio(2.0))
    await asyncio.sleep(0.4)
    session.emit(Interrupted())
    await asyncio.sleep(1.0)
    assert not run.done()
    sock.hang_up()
    assert await run is EndReason.CALLER_HANGUP


async def test_refused_setup_plays_the_apology_and_hangs_up() -> None:
    connector, sock = ScriptedConnector(refuse=1), FakeTwilioSocket()
    apology = tone(0.5, 8000, 600.0)
    bridge = make_bridge(connector, sock, apology=apology)
    reason = await asyncio.wait_for(bridge.run(sock.messages()), 5)
    assert reason is EndReason.LIVE_FAILED
    assert sum(len(p) for _, p in sock.heard) == 4000  # the whole clip, 20 ms frames
    assert sock.closed is not None


async def test_dropped_connection_resumes_with_the_newest_handle() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    first = connector.sessions[0]
    first.emit(ResumptionUpdate("h-1", True), ResumptionUpdate("h-2", True))
    await asyncio.sleep(0.05)
    first.drop()
    await until(lambda: len(connector.sessions) == 2)
    sock.speak(tone(0.2, 8000))
    await until(lambda: len(connector.sessions[1].audio) >= 10)
    sock.hang_up()
    assert await run is EndReason.CALLER_HANGUP
    assert connector.handles == [None, "h-2"]
    assert bridge.stats.reconnects == 1


async def test_goaway_reconnects_at_the_turn_boundary() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    first = connector.sessions[0]
    first.emit(ResumptionUpdate("h-9", True), agent_audio(0.2), GoAway(50.0))
    await asyncio.sleep(0.1)
    assert len(connector.sessions) == 1  # mid-turn: not yet
    first.emit(TurnComplete())
    await until(lambda: len(connector.sessions) == 2)
    assert first.closed
    sock.hang_up()
    await run
    assert connector.handles == [None, "h-9"]


async def test_drop_without_handle_goes_on_in_a_fresh_session() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock, apology=tone(0.2, 8000))
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    connector.sessions[0].emit(CallerTranscript("Hello there."))
    connector.sessions[0].drop()
    await until(lambda: len(connector.sessions) == 2)
    assert connector.handles == [None, None]
    assert connector.histories[1] is not None and "Caller: Hello there." in connector.histories[1]
    assert bridge.stats.reconnects == 1
    sock.hang_up()
    await asyncio.wait_for(run, 5)


async def test_drop_then_refused_fresh_session_apologises() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock, apology=tone(0.2, 8000))
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    connector.refuse = 5  # a bad key: fails fast, not after every retry
    connector.sessions[0].drop()
    assert await asyncio.wait_for(run, 5) is EndReason.LIVE_FAILED
    assert len(connector.handles) == 2


async def test_tool_call_without_tools_gets_an_error_result() -> None:
    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = make_bridge(connector, sock)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    session = connector.sessions[0]
    session.emit(ToolCall("c1", "lookup", {"x": 1}))
    await until(lambda: session.tool_responses)
    assert session.tool_responses[0].call_id == "c1"
    assert "error" in session.tool_responses[0].response
    sock.hang_up()
    await run


class YieldingSocket(FakeTwilioSocket):
    """Twilio over a real socket: a send yields to the loop, so an immediate echo (a mark
    with nothing left to play) can be handled before the send returns."""

    async def send_text(self, data: str) -> None:
        await super().send_text(data)
        for _ in range(3):
            await asyncio.sleep(0)


async def test_exit_mark_echoed_at_once_still_ends_the_call() -> None:
    connector, sock = ScriptedConnector(), YieldingSocket()
    # A fallback far beyond the wait below: only the mark's echo can end this call.
    bridge = make_bridge(connector, sock, goodbye_grace_seconds=0.2, hangup_fallback_seconds=60)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    connector.sessions[0].emit(agent_audio(0.2), TurnComplete())
    await asyncio.sleep(0.6)  # the goodbye has played out: the exit mark echoes at once
    await bridge.request_exit(EndReason.AGENT_HANGUP)
    assert await asyncio.wait_for(run, 5) is EndReason.AGENT_HANGUP


async def test_queued_audio_plays_out_even_when_nothing_new_arrives() -> None:
    """Time passes between the pacing check that ends a burst of sends and the next, so
    frames can be due again at once; the sender must keep going without a new chunk to
    wake it (a shutdown notice, the tail of a last turn)."""
    reads = [0]

    def clock() -> float:
        reads[0] += 1  # every look at the clock finds it 20 ms later
        return time.monotonic() + 0.02 * reads[0]

    connector, sock = ScriptedConnector(), FakeTwilioSocket()
    bridge = CallBridge(
        CallInfo(call_sid="CA" + "0" * 32, stream_sid=sock.stream_sid),
        sock,
        connector,
        config=BridgeConfig(hangup_fallback_seconds=3600),
        clock=clock,
    )
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    await bridge.say_and_end(tone(1.0, 8000, 500.0), EndReason.SHUTDOWN)
    assert await asyncio.wait_for(run, 10) is EndReason.SHUTDOWN
    media = [m for _, m in sock.sent if isinstance(m, OutboundMedia)]
    # The whole 1 s notice, then its exit mark ended the call.
    assert sum(len(m.payload) for m in media) == 8000


class StallingSocket(FakeTwilioSocket):
    """A Twilio socket whose next send blocks until released (a slow peer, a full buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.stall_next = False
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()

    async def send_text(self, data: str) -> None:
        if self.stall_next:
            self.stall_next = False
            self.stalled.set()
            await self.release.wait()
        await super().send_text(data)


async def test_a_stalled_twilio_socket_does_not_delay_handling_interrupted() -> None:
    connector, sock = ScriptedConnector(), StallingSocket()
    bridge = make_bridge(connector, sock)
    run = asyncio.create_task(bridge.run(sock.messages()))
    await connector.connected.wait()
    session = connector.sessions[0]
    session.emit(agent_audio(3.0))
    await until(lambda: sock.sent)
    sock.stall_next = True
    await asyncio.wait_for(sock.stalled.wait(), 5)  # the writer is stuck in a send
    # The barge-in, then a tool call behind it: the Live pump must get to both.
    session.emit(Interrupted(), ToolCall("c9", "lookup", {}))
    await until(lambda: session.tool_responses)
    assert bridge.stats.interruptions == 1
    assert bridge.playout.queued_samples == 0  # the rest of the turn is dropped already
    assert bridge.policy.state is State.LISTENING
    assert sock.clears() == []  # the writer is still stuck; the clear waits its turn
    sock.release.set()
    await until(lambda: sock.clears())
    # The clear went out as the writer's next message, and nothing stale followed it.
    assert sock.media_after(sock.clears()[0]) == 0
    sock.hang_up()
    assert await asyncio.wait_for(run, 5) is EndReason.CALLER_HANGUP
