"""The recorder: a WAV of exactly what was heard, written off-loop, crash-safe; the record."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import orjson
import pytest
from numpy.typing import NDArray
from structlog.testing import capture_logs

from app.recording import CallRecorder, mp3_available, prune_recordings, repair_recordings
from app.recording.timeline import AGENT, CALLER, Timeline
from app.recording.wavfile import wav_header

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
SID = "CA0123456789abcdef0123456789abcdef"


def frame_of(value: int, n: int = FRAME) -> NDArray[np.int16]:
    """A frame whose every sample says which frame it is: alignment shows sample-exactly."""
    return np.full(n, value, dtype=np.int16)


def read_stereo(path: Path) -> NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2)


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def read_record(directory: Path, sid: str = SID) -> dict[str, object]:
    record = orjson.loads((directory / f"{sid}.json").read_bytes())
    assert isinstance(record, dict)
    return record


def recorder(directory: Path, **kwargs: object) -> CallRecorder:
    meta = {"stream_sid": "MZ1", "from": "+15550001111", "to": "+15550002222"}
    return CallRecorder(directory, SID, meta=meta, flush_interval=0.005, **kwargs)  # type: ignore[arg-type]


# --- the synthetic call --------------------------------------------------------------
TICKS = 150  # 3 s of caller audio
GAP = range(20, 25)  # caller frames Twilio never sent: silence in the file
LEAD = 10  # the agent is scheduled 200 ms ahead of the caller clock
CLEAR_TICK = 40  # the caller barges in here ...
AGENT_TICKS = range(5, CLEAR_TICK)  # the agent's first reply, frames scheduled at (t + LEAD)
CLEAR_AT = CLEAR_TICK * FRAME + 37  # ... and playback stopped at this sample
REPLY_TICKS = range(100, 150)  # the agent's second reply; its last frames are never played


async def run_synthetic_call(rec: CallRecorder) -> None:
    for t in range(TICKS):
        if t == CLEAR_TICK:
            rec.agent_cleared(CLEAR_AT)
            rec.interruption(CLEAR_AT)
        if t in AGENT_TICKS or t in REPLY_TICKS:
            rec.agent_audio((t + LEAD) * FRAME, frame_of(-(t + LEAD)))
        if t not in GAP:
            rec.caller_audio(t * FRAME, frame_of(t + 1))
        if t % 25 == 0:
            await asyncio.sleep(0.02)  # let the writer commit mid-call


def expected_channels() -> tuple[NDArray[np.int16], NDArray[np.int16]]:
    caller = np.zeros(TICKS * FRAME, dtype=np.int16)
    agent = np.zeros(TICKS * FRAME, dtype=np.int16)
    for t in range(TICKS):
        if t not in GAP:
            caller[t * FRAME : (t + 1) * FRAME] = t + 1
    for t in AGENT_TICKS:
        agent[(t + LEAD) * FRAME : (t + LEAD + 1) * FRAME] = -(t + LEAD)
    agent[CLEAR_AT:] = 0  # removed by the barge-in
    for t in REPLY_TICKS:  # the frames scheduled past the call's end are cut off
        agent[(t + LEAD) * FRAME : (t + LEAD + 1) * FRAME] = -(t + LEAD)
    return caller, agent


async def test_wav_holds_exactly_what_was_heard(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    await run_synthetic_call(rec)
    result = await rec.aclose("caller_hangup")

    stereo = read_stereo(tmp_path / f"{SID}.wav")
    caller, agent = expected_channels()
    assert len(stereo) == TICKS * FRAME  # the call's length, though the agent ran past it
    np.testing.assert_array_equal(stereo[:, 0], caller)
    np.testing.assert_array_equal(stereo[:, 1], agent)
    # The agent audio right before the clear is intact; from the clear on it is silent.
    assert stereo[CLEAR_AT - 1, 1] != 0
    assert not stereo[CLEAR_AT : (REPLY_TICKS[0] + LEAD) * FRAME, 1].any()
    assert result.duration_s == result.recorded_s == TICKS * FRAME / RATE
    assert result.error is None


async def test_record_describes_the_call(tmp_path: Path) -> None:
    rec = CallRecorder(
        tmp_path,
        SID,
        meta={"stream_sid": "MZ9", "from": "+1555", "to": "+1666", "model": "m", "api_key": "k"},
        flush_interval=0.005,
    )
    rec.caller_audio(0, frame_of(1, RATE * 2))
    rec.transcript("caller", "Hello,", 800)
    rec.transcript("caller", " is anyone", 1600)
    rec.transcript("caller", " there?", 2400)
    rec.transcript("agent", "Hi!", 4000)
    rec.interruption(5000)
    rec.transcript("agent", "Sorry, go on.", 6000)
    rec.tool_call("c1", "lookup", {"q": "x"}, {"ok": 1}, True, 0.1234, 8000)
    rec.usage({"prompt_tokens": 10, "details": {"audio": 3}, "flag": True})
    rec.usage({"prompt_tokens": 5, "details": {"audio": 1}})
    rec.reconnect(9000, "go_away")
    rec.dtmf("5", 10000)
    rec.note("live_failure", "boom", 12000)
    result = await rec.aclose("agent_hangup")

    record = read_record(tmp_path)
    assert result.record_path == tmp_path / f"{SID}.json"
    assert record["call_sid"] == SID
    assert (record["stream_sid"], record["from"], record["to"]) == ("MZ9", "+1555", "+1666")
    assert record["end_reason"] == "agent_hangup"
    assert record["duration_s"] == 2.0
    assert str(record["started_at"]).endswith("Z") and str(record["ended_at"]).endswith("Z")
    assert record["transcript"] == [
        {"side": "caller", "text": "Hello, is anyone there?", "at_s": 0.1, "end_s": 0.3},
        {"side": "agent", "text": "Hi!", "at_s": 0.5, "end_s": 0.5},
        {"side": "agent", "text": "Sorry, go on.", "at_s": 0.75, "end_s": 0.75},
    ]
    assert record["tool_calls"] == [
        {
            "call_id": "c1", "name": "lookup", "args": {"q": "x"}, "result": {"ok": 1},
            "ok": True, "duration_s": 0.123, "at_s": 1.0,
        }
    ]  # fmt: skip
    assert record["interruptions"] == [{"at_s": 0.625}]
    assert record["reconnects"] == [{"at_s": 1.125, "reason": "go_away", "kind": "resumed"}]
    assert record["dtmf"] == [{"digit": "5", "at_s": 1.25}]
    assert record["notes"] == [{"kind": "live_failure", "detail": "boom", "at_s": 1.5}]
    assert record["usage"] == {"prompt_tokens": 15, "details.audio": 4}
    assert record["meta"] == {"stream_sid": "MZ9", "from": "+1555", "to": "+1666", "model": "m"}
    assert b'"k"' not in (tmp_path / f"{SID}.json").read_bytes()  # secrets never land
    recording = record["recording"]
    assert isinstance(recording, dict)
    assert recording["status"] == "complete"
    assert recording["files"] == {
        "wav": f"{SID}.wav",
        "mp3": f"{SID}.mp3" if mp3_available() else None,
    }


async def test_methods_return_at_once_and_io_stays_off_the_loop(tmp_path: Path) -> None:
    gate = threading.Event()
    files: list[GatedFile] = []

    def opener(path: Path) -> BinaryIO:
        files.append(GatedFile(path, gate))
        return cast(BinaryIO, files[-1])

    rec = recorder(tmp_path, opener=opener)
    started = time.perf_counter()
    for t in range(500):  # 10 s of call while the disk is stuck
        rec.caller_audio(t * FRAME, frame_of(1))
        rec.agent_audio(t * FRAME, frame_of(2))
        rec.transcript("caller", "x", t * FRAME)
    assert time.perf_counter() - started < 0.5
    gate.set()
    result = await rec.aclose("done")
    assert result.recorded_s == 10.0
    assert files[0].threads and threading.current_thread().name not in files[0].threads


async def test_aclose_is_idempotent_and_close_is_sync(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.caller_audio(0, frame_of(1))
    first = await rec.aclose("a")
    assert await rec.aclose("b") == first
    assert rec.close() == first
    rec.caller_audio(FRAME, frame_of(1))  # after close: dropped, no error
    assert read_record(tmp_path)["end_reason"] == "a"

    other = CallRecorder(tmp_path, "CAsynccloser1", meta={})
    other.caller_audio(0, frame_of(3))
    assert other.close("server_shutdown").duration_s == FRAME / RATE


async def test_a_cancelled_aclose_still_finishes(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.caller_audio(0, frame_of(1, RATE))
    task = asyncio.create_task(rec.aclose("cancelled"))
    await asyncio.sleep(0)
    task.cancel()
    result = await rec.aclose("again")
    assert result.duration_s == 1.0
    assert read_record(tmp_path)["end_reason"] == "cancelled"


async def test_a_full_disk_stops_the_recording_not_the_call(tmp_path: Path) -> None:
    def opener(path: Path) -> BinaryIO:
        return cast(BinaryIO, FullDisk(path, budget=44 + 4 * RATE))  # header + 1 s

    with capture_logs() as logs:
        rec = recorder(tmp_path, opener=opener)
        for t in range(150):
            rec.caller_audio(t * FRAME, frame_of(1))
            rec.agent_audio(t * FRAME, frame_of(2))
            if t % 10 == 0:
                await asyncio.sleep(0.01)
        rec.transcript("caller", "still talking", 100 * FRAME)
        result = await rec.aclose("caller_hangup")

    failures = [entry for entry in logs if entry["event"] == "recording.failed"]
    assert len(failures) == 1 and failures[0]["call_sid"] == SID
    assert result.error is not None and "No space" in result.error
    assert result.duration_s == 3.0 and result.recorded_s <= 1.0
    record = read_record(tmp_path)
    recording = record["recording"]
    assert isinstance(recording, dict)
    assert recording["status"] == "failed" and "No space" in str(recording["error"])
    assert record["transcript"] == [
        {"side": "caller", "text": "still talking", "at_s": 2.0, "end_s": 2.0}
    ]


async def test_an_unwritable_directory_is_logged_and_survived(tmp_path: Path) -> None:
    def opener(path: Path) -> BinaryIO:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    rec = recorder(tmp_path, opener=opener)
    rec.caller_audio(0, frame_of(1))
    result = await rec.aclose("caller_hangup")
    assert result.error is not None and "Permission denied" in result.error
    recording = read_record(tmp_path)["recording"]
    assert isinstance(recording, dict) and recording["status"] == "failed"


async def test_a_bug_in_the_writer_never_hangs_aclose(tmp_path: Path) -> None:
    def opener(path: Path) -> BinaryIO:
        raise RuntimeError("a bug, not a disk error")

    with capture_logs() as logs:
        rec = recorder(tmp_path, opener=opener)
        rec.caller_audio(0, frame_of(1))
        result = await asyncio.wait_for(rec.aclose("x"), timeout=5)
    assert result.error == "the recording writer crashed"
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["recording.writer_crashed"]


async def test_an_invalid_call_sid_writes_nothing(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path, "../evil", meta={})
    rec.caller_audio(0, frame_of(1))
    result = await rec.aclose("x")
    assert result.error and result.wav_path is None and result.record_path is None
    assert files_in(tmp_path) == []


# --- crash safety --------------------------------------------------------------------
KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from app.recording import CallRecorder

    rec = CallRecorder(Path(sys.argv[1]), "CAkilled000000", meta={}, flush_interval=0.5)
    frame = (np.sin(np.arange(160) * 0.2) * 5000).astype(np.int16)
    start, position = time.monotonic(), 0
    while True:
        rec.caller_audio(position, frame)
        rec.agent_audio(position, frame)
        position += 160
        print(position, flush=True)
        time.sleep(max(0.0, start + position / 8000 - time.monotonic()))
    """
)


def test_kill_9_leaves_a_playable_wav(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.stdout is not None
    # The clock starts at the first frame written, not at spawn: on a loaded machine the
    # child's imports alone can take most of a second.
    written = int(proc.stdout.readline())
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        written = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert written >= 1.5 * RATE

    wav = tmp_path / "CAkilled000000.wav"
    with wave.open(str(wav), "rb") as reader:  # playable as it is, before any repair
        kept = reader.getnframes()
    assert kept >= written - RATE

    repaired = repair_recordings(tmp_path)
    assert tmp_path / "CAkilled000000.json" in repaired
    assert read_stereo(wav).shape[0] >= kept
    record = read_record(tmp_path, "CAkilled000000")
    assert record["end_reason"] == "server_crashed"
    assert float(str(record["duration_s"])) >= (written - RATE) / RATE


def write_wav(path: Path, frames: int, *, header_frames: int | None = None) -> bytes:
    data = np.arange(frames * 2, dtype="<i2").tobytes()
    declared = frames if header_frames is None else header_frames
    path.write_bytes(wav_header(declared * 4, sample_rate=RATE, channels=2) + data)
    return data


def test_repair_fixes_sizes_and_cuts_a_partial_frame(tmp_path: Path) -> None:
    wav = tmp_path / "CAtruncated01.wav"
    data = write_wav(wav, 1000, header_frames=400)  # header flushed before the last data
    with wav.open("ab") as file:
        file.write(b"\x01\x02\x03")  # a frame cut short by the kill
    assert set(repair_recordings(tmp_path)) == {wav, wav.with_suffix(".json")}
    assert wav.read_bytes()[44:] == data
    assert read_stereo(wav).shape == (1000, 2)


def test_repair_replaces_a_garbled_header(tmp_path: Path) -> None:
    wav = tmp_path / "CAgarbled0001.wav"
    data = write_wav(wav, 500)
    wav.write_bytes(b"\xff" * 44 + data)
    stub = tmp_path / "CAstub00000001.wav"
    stub.write_bytes(b"RIFF\x00")  # killed before the first header reached the disk
    repaired = repair_recordings(tmp_path)
    assert wav in repaired and stub in repaired
    assert read_stereo(wav).shape == (500, 2)
    assert read_stereo(stub).shape == (0, 2)


def test_repair_leaves_healthy_calls_alone(tmp_path: Path) -> None:
    wav = tmp_path / "CAhealthy0001.wav"
    write_wav(wav, 800)
    (tmp_path / "CAhealthy0001.json").write_bytes(b"{}")
    (tmp_path / "notes.wav").write_bytes(b"not ours")
    (tmp_path / "CAhealthy0001.json.tmp").write_bytes(b"{")
    before = wav.read_bytes()
    assert repair_recordings(tmp_path) == []
    assert wav.read_bytes() == before
    assert (tmp_path / "notes.wav").read_bytes() == b"not ours"
    assert not (tmp_path / "CAhealthy0001.json.tmp").exists()
    assert repair_recordings(tmp_path / "missing") == []


# --- retention -----------------------------------------------------------------------
def test_prune_deletes_whole_calls_older_than_retention(tmp_path: Path) -> None:
    now = time.time()
    day = 86400

    def make(sid: str, age_days: float, suffixes: tuple[str, ...] = (".wav", ".json")) -> None:
        for suffix in suffixes:
            path = tmp_path / f"{sid}{suffix}"
            path.write_bytes(b"x")
            os.utime(path, (now - age_days * day, now - age_days * day))

    make("CAold000000001", 10, (".wav", ".json", ".mp3"))
    make("CAold000000002", 8)
    make("CAnew000000001", 1)
    make("README", 100, (".txt",))
    assert prune_recordings(tmp_path, 0, now=now) == 0  # 0 keeps forever
    assert prune_recordings(tmp_path, 7, now=now) == 2
    assert files_in(tmp_path) == [
        "CAnew000000001.json", "CAnew000000001.wav", "README.txt",
    ]  # fmt: skip


# --- optional mp3 --------------------------------------------------------------------
@pytest.mark.skipif(not mp3_available(), reason="lameenc is not installed (optional extra)")
async def test_mp3_is_written_when_lameenc_is_installed(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    tone = (np.sin(np.arange(RATE) * 0.3) * 8000).astype(np.int16)
    rec.caller_audio(0, tone)
    result = await rec.aclose("done")
    assert result.mp3_path == tmp_path / f"{SID}.mp3"
    assert result.mp3_path.read_bytes()[:2] == b"\xff\xe3"  # an MPEG-2.5 layer III frame


# --- the pending window, without threads ---------------------------------------------
def test_timeline_commits_only_what_was_heard() -> None:
    timeline = Timeline(max_pending=RATE, max_jump=60 * RATE)
    timeline.place(CALLER, 0, frame_of(1))
    timeline.place(AGENT, 100, frame_of(2))  # scheduled ahead of the caller
    assert len(timeline.take()) == FRAME  # the caller's position, not the agent's
    timeline.clear_agent(FRAME + 10)
    timeline.advance(2 * FRAME)
    frames = timeline.take()
    assert frames[:10, 1].tolist() == [2] * 10 and not frames[10:, 1].any()
    assert timeline.cleared_samples == 100 + FRAME - (FRAME + 10)


def test_timeline_holdback_keeps_agent_audio_placed_just_behind_the_caller() -> None:
    timeline = Timeline(max_pending=RATE, max_jump=60 * RATE, holdback=2 * FRAME)
    timeline.place(CALLER, 0, frame_of(1, 5 * FRAME))
    assert len(timeline.take()) == 3 * FRAME
    timeline.place(AGENT, 4 * FRAME, frame_of(2))  # "now" on the playout clock: 20 ms behind
    frames = timeline.finish()
    assert frames[FRAME:, 1].tolist() == [2] * FRAME and timeline.late_samples == 0


def test_timeline_counts_what_came_too_late() -> None:
    timeline = Timeline(max_pending=RATE, max_jump=60 * RATE)
    timeline.place(AGENT, 0, frame_of(2))
    timeline.advance(FRAME)
    timeline.take()
    timeline.clear_agent(100)  # the bridge cleared audio that was already committed
    timeline.place(CALLER, 100, frame_of(1))  # a caller frame from before the commit
    assert timeline.late_clear_samples == FRAME - 100
    assert timeline.late_samples == FRAME - 100
    assert len(timeline.take()) == 100


def test_timeline_bounds_memory() -> None:
    timeline = Timeline(max_pending=RATE, max_jump=60 * RATE)
    timeline.place(AGENT, 0, frame_of(2, 3 * RATE))  # no caller audio, no advance
    assert len(timeline.take()) == 2 * RATE  # all but the last second is forced out
    with pytest.raises(ValueError, match="jumps"):
        timeline.place(CALLER, 100 * RATE, frame_of(1))


# --- fakes of a disk -----------------------------------------------------------------
class GatedFile(io.FileIO):
    """A file whose writes wait for `gate` and note which thread made them."""

    def __init__(self, path: Path, gate: threading.Event) -> None:
        super().__init__(path, "xb")
        self._gate = gate
        self.threads: set[str] = set()

    def write(self, data: object) -> int:
        self.threads.add(threading.current_thread().name)
        self._gate.wait()
        return super().write(data)  # type: ignore[arg-type]


class FullDisk(io.FileIO):
    """A file on a disk that fills up after `budget` bytes."""

    def __init__(self, path: Path, budget: int) -> None:
        super().__init__(path, "xb")
        self._budget = budget

    def write(self, data: object) -> int:
        size = len(data)  # type: ignore[arg-type]
        if self.tell() + size > self._budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)  # type: ignore[arg-type]
