"""The writer thread of one recording: owns the timeline, the WAV and the call log.

Everything here runs on the thread `CallRecorder` starts; `CallRecorder` only posts
`Command`s and one `CloseRequest` to its `Mailbox`, which the writer empties when it
flushes (or at once for the close). Broad `except`s are at this I/O edge, and each logs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import structlog
from numpy.typing import NDArray

from app.recording.files import is_call_sid
from app.recording.mailbox import Mailbox
from app.recording.mp3 import encode_mp3
from app.recording.record import CallLog, Json, build_record, write_json_atomic
from app.recording.timeline import Timeline
from app.recording.wavfile import SAMPLE_WIDTH, WavAppender

Opener = Callable[[Path], BinaryIO]

CHANNELS = 2  # caller left, agent right
MAX_PENDING_S = 10.0  # see Timeline: how far agent audio may be scheduled before forced commit
MAX_JUMP_S = 300.0  # a timestamp further ahead than this is bogus, not a gap
# Kept uncommitted behind the newest caller position (see Timeline). It must exceed the
# bridge's 200 ms playout lead with slack for event-loop delays under load, or the tail
# of an agent turn can arrive after its place was committed (seen at 0.2 s). With the
# flush interval it bounds what a kill -9 loses: 0.4 s + 0.5 s, under the promised 1 s.
HOLDBACK_S = 0.4
FSYNC_INTERVAL_S = 5.0  # the page cache survives kill -9; fsync only bounds power-loss damage


def open_new_file(path: Path) -> BinaryIO:
    """Create `path` for writing; an existing recording is never overwritten."""
    return path.open("xb")


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """What a closed recorder left behind."""

    call_sid: str
    wav_path: Path | None  # None when no WAV could be created
    mp3_path: Path | None  # None without lameenc, or when encoding failed
    record_path: Path | None  # None when the call record could not be written
    duration_s: float  # the call's length on the call clock
    recorded_s: float  # audio in the WAV: less than duration_s only after a disk error
    error: str | None  # why the recording is incomplete, if it is


@dataclass(frozen=True, slots=True)
class Command:
    method: Callable[..., None]
    args: tuple[object, ...]

    def run(self) -> None:
        self.method(*self.args)


@dataclass(frozen=True, slots=True)
class CloseRequest:
    end_reason: str
    future: Future[RecordingResult]


class RecordingWriter:
    """Everything of one recording, used only on its writer thread."""

    def __init__(
        self,
        directory: Path,
        call_sid: str,
        meta: dict[str, object],
        flush_interval: float,
        sample_rate: int,
        opener: Opener,
    ) -> None:
        self.call_sid = call_sid
        self.timeline = Timeline(
            max_pending=int(MAX_PENDING_S * sample_rate),
            max_jump=int(MAX_JUMP_S * sample_rate),
            holdback=int(HOLDBACK_S * sample_rate),
        )
        self.log = CallLog(sample_rate=sample_rate)
        self._dir = directory
        self._meta = meta
        self._rate = sample_rate
        self._flush_interval = flush_interval
        self._opener = opener
        self._started_at = datetime.now(UTC)
        self._wav: WavAppender | None = None
        self._wav_path: Path | None = None
        self._error: str | None = None
        self._recorded_frames = 0  # in the WAV as of its last good header
        self._warned: set[str] = set()
        # A fresh proxy per call: a logger cached at import would escape capture_logs().
        self._log = structlog.get_logger("app.recording").bind(call_sid=call_sid)

    def run(self, commands: Mailbox[Command | CloseRequest]) -> None:
        try:
            self._serve(commands)
        except Exception:  # a bug: say so loudly, and still answer aclose() so no call hangs
            self._log.exception("recording.writer_crashed")
            self._answer_close(commands, "the recording writer crashed")

    def _answer_close(self, commands: Mailbox[Command | CloseRequest], error: str) -> None:
        while True:
            for command in commands.take(None):
                if isinstance(command, CloseRequest):
                    if command.future.set_running_or_notify_cancel():
                        command.future.set_result(self.failed_result(error))
                    return

    def _serve(self, commands: Mailbox[Command | CloseRequest]) -> None:
        self._open()
        next_flush = next_fsync = time.monotonic()
        while True:
            # Wake at the flush deadline (or for the close): every command made so far
            # is applied before each flush, so batching them loses nothing.
            for command in commands.take(max(0.0, next_flush - time.monotonic())):
                if isinstance(command, CloseRequest):
                    self._close(command)
                    return
                self._run(command)
            now = time.monotonic()
            if now >= next_flush:
                self._flush(fsync=now >= next_fsync)
                next_flush = now + self._flush_interval
                next_fsync = next_fsync if now < next_fsync else now + FSYNC_INTERVAL_S

    def _run(self, command: Command) -> None:
        try:
            command.run()
        except ValueError as exc:  # a bogus position from the bridge: skip it, say so once
            self._warn_once("recording.bad_input", str(exc))
        except Exception as exc:  # a bug here must not stop the recording of the call
            self._warn_once("recording.command_failed", repr(exc))

    def _open(self) -> None:
        if not is_call_sid(self.call_sid):
            self._error = "not a valid call sid; nothing is written"
            self._log.error("recording.failed", error=self._error)
            return
        path = self._dir / f"{self.call_sid}.wav"
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            file = self._opener(path)
            self._wav_path = path
            self._wav = WavAppender(file, sample_rate=self._rate, channels=CHANNELS)
        except OSError as exc:
            self._fail(exc)

    def _flush(self, *, fsync: bool) -> None:
        frames = self.timeline.take()  # drained even after a failure, to bound memory
        if self._wav is None:
            return
        try:
            self._append(frames, fsync=fsync)
        except OSError as exc:
            self._fail(exc)

    def _append(self, frames: NDArray[np.int16], *, fsync: bool) -> None:
        assert self._wav is not None
        self._wav.append(frames.astype("<i2", copy=False).tobytes())
        self._wav.commit(fsync=fsync)
        self._recorded_frames = self._wav.data_bytes // (CHANNELS * SAMPLE_WIDTH)

    def _fail(self, exc: OSError) -> None:
        """A disk error: log it once, stop writing audio; the call goes on."""
        self._error = f"{type(exc).__name__}: {exc}"
        self._log.error("recording.failed", error=self._error)
        wav, self._wav = self._wav, None
        if wav is not None:
            # Already reported above; closing a failed file may fail again.
            with contextlib.suppress(OSError):
                wav.close()

    def _close(self, close: CloseRequest) -> None:
        if not close.future.set_running_or_notify_cancel():
            return
        try:
            close.future.set_result(self._finish(close.end_reason))
        except Exception as exc:  # report, don't lose: aclose turns this into a result
            self._log.exception("recording.finish_failed")
            close.future.set_exception(exc)

    def _finish(self, end_reason: str) -> RecordingResult:
        self._write_last(self.timeline.finish())
        mp3_path = self._encode_mp3()
        record_path = self._write_record(end_reason, mp3_path)
        self._log.info("recording.closed", end_reason=end_reason, duration_s=self._duration_s())
        return self._result(mp3_path, record_path)

    def _write_last(self, frames: NDArray[np.int16]) -> None:
        if self._wav is None:
            return
        try:
            self._append(frames, fsync=True)
            self._wav.close()
        except OSError as exc:
            self._fail(exc)

    def _encode_mp3(self) -> Path | None:
        if self._wav_path is None or self._error is not None:
            return None
        mp3_path = self._wav_path.with_suffix(".mp3")
        try:
            return mp3_path if encode_mp3(self._wav_path, mp3_path) else None
        except Exception as exc:  # lameenc raises its own errors; the WAV is what matters
            self._log.error("recording.mp3_failed", error=repr(exc))
            return None

    def _write_record(self, end_reason: str, mp3_path: Path | None) -> Path | None:
        if not is_call_sid(self.call_sid):
            return None
        path = self._dir / f"{self.call_sid}.json"
        try:
            write_json_atomic(path, self._record(end_reason, mp3_path))
        except OSError as exc:
            self._log.error("recording.record_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return path

    def _record(self, end_reason: str, mp3_path: Path | None) -> Json:
        return build_record(
            call_sid=self.call_sid,
            meta=self._meta,
            started_at=self._started_at,
            ended_at=datetime.now(UTC),
            duration_s=self._duration_s(),
            end_reason=end_reason,
            recording=self._recording_section(mp3_path),
            events=self.log.events(),
        )

    def _recording_section(self, mp3_path: Path | None) -> Json:
        seconds = self.log.seconds
        t = self.timeline
        return {
            "status": "failed" if self._error else "complete",
            "error": self._error,
            "files": {
                "wav": self._wav_path.name if self._wav_path else None,
                "mp3": mp3_path.name if mp3_path else None,
            },
            "format": {
                "sample_rate": self._rate, "channels": ["caller", "agent"],
                "sample_width_bits": 8 * SAMPLE_WIDTH,
            },
            "duration_s": round(self._recorded_s(), 3),
            "agent_cleared_s": seconds(t.cleared_samples),
            "agent_unplayed_s": seconds(t.unplayed_samples),
            "late_clear_s": seconds(t.late_clear_samples),
            "late_audio_s": seconds(t.late_samples),
        }  # fmt: skip

    def _duration_s(self) -> float:
        return self.timeline.committed / self._rate

    def _recorded_s(self) -> float:
        return self._recorded_frames / self._rate

    def _result(self, mp3_path: Path | None, record_path: Path | None) -> RecordingResult:
        return RecordingResult(
            call_sid=self.call_sid,
            wav_path=self._wav_path,
            mp3_path=mp3_path,
            record_path=record_path,
            duration_s=round(self._duration_s(), 3),
            recorded_s=round(self._recorded_s(), 3),
            error=self._error,
        )

    def failed_result(self, error: str) -> RecordingResult:
        return RecordingResult(self.call_sid, None, None, None, 0.0, 0.0, error)

    def _warn_once(self, event: str, error: str) -> None:
        if event not in self._warned:
            self._warned.add(event)
            self._log.warning(event, error=error)
