"""The recorder tee: forwards everything, publishes without waiting, costs nothing unwatched."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.console.events import ALL_CALLS, MemoryBus
from app.console.watch import ResponseLatency, WatchedRecorder, audio_channel
from app.recording import CallRecorder
from app.recording.record import read_json

SID = "CA" + "2" * 32


def speech(seconds: float, amplitude: int = 3000) -> np.ndarray:
    return np.full(int(seconds * 8000), amplitude, dtype=np.int16)


def test_latency_is_from_end_of_caller_speech_to_agent_audio() -> None:
    latency = ResponseLatency()
    latency.caller(0, speech(1.0))  # speaks 0.0-1.0 s
    latency.caller(8000, np.zeros(4000, dtype=np.int16))
    assert latency.agent(8000 + 4800, 1600) == 0.6
    assert latency.agent(8000 + 6400, 1600) is None, "same turn, no new figure"
    assert latency.agent(40000, 1600) is None, "a new agent turn without caller speech"
    latency.caller(44000, speech(0.5))
    assert latency.agent(46000, 800) is None, "the agent started while the caller still spoke"


async def test_tee_forwards_to_the_recorder_and_publishes(tmp_path: Path) -> None:
    bus = MemoryBus()
    inner = CallRecorder(tmp_path, SID, meta={"from": "+1555", "direction": "web"})
    with bus.subscribe(ALL_CALLS) as everyone:
        tee = WatchedRecorder(inner, bus, SID, {"from": "+1555", "direction": "web"})
        started = await everyone.get()
    assert started["call"]["direction"] == "web" and bus.active()[0]["call_sid"] == SID
    # Unwatched: audio goes to the recorder only (no latency gate, no listen-in copies).
    tee.caller_audio(0, speech(1.0))
    assert bus.recent(SID) == []
    with bus.subscribe(SID) as one, bus.subscribe(audio_channel(SID)) as ears:
        tee.caller_audio(8000, speech(0.5))  # speaks 1.0-1.5 s
        tee.caller_audio(12000, np.zeros(4000, dtype=np.int16))
        tee.agent_audio(12000 + 4000, speech(0.2))  # answers at 2.0 s
        tee.transcript("caller", "hello", 4000)
        tee.tool_call("c1", "lookup", {"id": 1}, {"ok": True}, True, 0.01, 9000)
        tee.interruption(17000)
        tee.agent_cleared(17000)
        events = [await one.get() for _ in range(7)]
        heard = [await ears.get() for _ in range(4)]
    assert [e["type"] for e in events] == [
        "latency", "call.updated", "transcript", "call.updated", "tool_call", "call.updated",
        "interruption",
    ]  # fmt: skip
    assert events[0]["seconds"] == 0.5 and events[4]["args"] == {"id": 1}
    assert [h["type"] for h in heard] == ["audio", "audio", "audio", "audio.cleared"]
    assert heard[2]["side"] == "agent" and len(heard[2]["pcm"]) == 1600 * 2
    tee.advance(20000)
    result = await tee.aclose("caller_hangup")
    assert bus.active() == []
    record = read_json(result.record_path) if result.record_path else None
    assert record is not None and record["direction"] == "web"
    assert [t["text"] for t in record["transcript"]] == ["hello"]
    assert record["tool_calls"][0]["name"] == "lookup" and len(record["interruptions"]) == 1
