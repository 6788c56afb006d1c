"""The recordings directory: naming, repair after a crash, and retention.

Every call leaves `{call_sid}.wav`, `{call_sid}.json` and, with `lameenc` installed,
`{call_sid}.mp3`. Nothing else in the directory is touched by these functions.
"""

from __future__ import annotations

import re
import time
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from app.recording.record import Json, build_record, write_json_atomic
from app.recording.wavfile import repair_wav, wav_duration

# Twilio's call sids are CA + 32 hex digits; the simulator and the tests use other
# letters and lengths. No dots or slashes either way, so a sid is always a plain file name.
CALL_SID_RE = re.compile(r"^CA[0-9A-Za-z]{10,64}$")
CALL_FILE_SUFFIXES = (".wav", ".mp3", ".json")

log = structlog.get_logger("app.recording")


def is_call_sid(value: str) -> bool:
    return CALL_SID_RE.fullmatch(value) is not None


def call_file(directory: Path, call_sid: str, suffix: str) -> Path:
    """`directory/{call_sid}{suffix}`; ValueError for anything that is not a call sid."""
    if not is_call_sid(call_sid) or suffix not in CALL_FILE_SUFFIXES:
        raise ValueError(f"not a call file: {call_sid!r}{suffix!r}")
    return directory / f"{call_sid}{suffix}"


def repair_recordings(directory: Path, *, sample_rate: int = 8000) -> list[Path]:
    """Fix recordings left by a crash; returns every file it changed or wrote.

    Run at server start, before any call: a WAV being written looks "unrepaired" too.
    A WAV whose header sizes disagree with its length is fixed in place (a partial last
    frame is cut off); a call without a record gets a minimal one with
    `end_reason: "server_crashed"`. Leftover `*.json.tmp` files are removed.
    """
    changed: list[Path] = []
    if not directory.is_dir():
        return changed
    for tmp in directory.glob("CA*.json.tmp"):
        tmp.unlink(missing_ok=True)
    for wav in sorted(directory.glob("CA*.wav")):
        if not is_call_sid(wav.stem):
            continue
        try:
            changed.extend(_repair_call(wav, sample_rate=sample_rate))
        except (OSError, EOFError, wave.Error) as exc:  # one bad file must not stop the rest
            log.error("recording.repair_failed", file=wav.name, error=str(exc))
    return changed


def _repair_call(wav: Path, *, sample_rate: int) -> list[Path]:
    changed = [wav] if repair_wav(wav, sample_rate=sample_rate) else []
    record = wav.with_suffix(".json")
    if not record.exists():
        write_json_atomic(record, crash_record(wav))
        changed.append(record)
    if changed:
        log.warning("recording.repaired", call_sid=wav.stem, files=[p.name for p in changed])
    return changed


def crash_record(wav: Path) -> Json:
    """The minimal record of a call whose recorder never closed: what the WAV tells."""
    duration = wav_duration(wav)
    ended = datetime.fromtimestamp(wav.stat().st_mtime, UTC)
    mp3 = wav.with_suffix(".mp3")
    empty: Json = {
        "transcript": [], "tool_calls": [], "interruptions": [], "reconnects": [],
        "dtmf": [], "notes": [], "usage": {},
    }  # fmt: skip
    recording: Json = {
        "status": "partial",
        "files": {"wav": wav.name, "mp3": mp3.name if mp3.exists() else None},
        "duration_s": round(duration, 3),
        "error": "the server stopped before the call ended; the record holds only the audio",
    }
    return build_record(
        call_sid=wav.stem, meta={}, started_at=ended - timedelta(seconds=duration),
        ended_at=ended, duration_s=duration, end_reason="server_crashed",
        recording=recording, events=empty,
    )  # fmt: skip


def prune_recordings(directory: Path, retention_days: int, *, now: float | None = None) -> int:
    """Delete calls whose newest file is older than `retention_days`; returns calls deleted.

    0 keeps everything. All of a call's files go together, judged by the newest one, so
    a record is never left without its audio or the other way round.
    """
    if retention_days <= 0 or not directory.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    newest: dict[str, float] = {}
    for path in directory.iterdir():
        if path.suffix in CALL_FILE_SUFFIXES and is_call_sid(path.stem):
            mtime = path.stat().st_mtime
            newest[path.stem] = max(newest.get(path.stem, mtime), mtime)
    expired = [sid for sid, mtime in newest.items() if mtime < cutoff]
    for sid in expired:
        for suffix in CALL_FILE_SUFFIXES:
            (directory / f"{sid}{suffix}").unlink(missing_ok=True)
    if expired:
        log.info("recording.pruned", calls=len(expired), retention_days=retention_days)
    return len(expired)
