"""The call record: what happened on a call, as one JSON document (see docs/recordings.md).

`CallLog` is pure: it collects events stamped on the call clock and builds the record.
The recorder's writer thread owns it; nothing here touches files except
`write_json_atomic`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson

SCHEMA_VERSION = 1
Side = Literal["caller", "agent"]
# Fragments of one side's speech closer together than this, with nothing else in
# between, are one line: Live sends transcripts a few words at a time.
MERGE_GAP_S = 3.0
# Meta is for numbers, sids and model names. Anything named like a credential is
# dropped so a careless caller of the recorder cannot leak it into a file.
_SECRET_KEY = re.compile(r"token|secret|password|passwd|api_?key|authorization|auth|cookie", re.I)
_JSON_OPTIONS = (
    orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z
)

Json = dict[str, object]


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, e.g. `2025-01-31T12:00:00.123Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def safe_meta(meta: Mapping[str, object]) -> Json:
    return {str(k): v for k, v in meta.items() if not _SECRET_KEY.search(str(k))}


class CallLog:
    """Events of one call, timestamped in seconds on the call clock."""

    def __init__(self, *, sample_rate: int) -> None:
        self._rate = sample_rate
        self.transcript: list[Json] = []
        self.tool_calls: list[Json] = []
        self.interruptions: list[Json] = []
        self.reconnects: list[Json] = []
        self.dtmf: list[Json] = []
        self.notes: list[Json] = []
        self.usage: dict[str, int] = {}
        self._open_turn: Json | None = None  # the line the next fragment may extend

    def seconds(self, at_sample: int) -> float:
        return round(at_sample / self._rate, 3)

    def add_transcript(self, side: Side, text: str, at_sample: int) -> None:
        at = self.seconds(at_sample)
        line = self._open_turn
        if line is not None and line["side"] == side and at - _float(line["end_s"]) <= MERGE_GAP_S:
            line["text"] = f"{line['text']}{text}"
            line["end_s"] = max(_float(line["end_s"]), at)
            return
        self._open_turn = {"side": side, "text": text, "at_s": at, "end_s": at}
        self.transcript.append(self._open_turn)

    def add_tool_call(
        self,
        call_id: str,
        name: str,
        args: object,
        result: object,
        ok: bool,
        duration_s: float,
        at_sample: int,
    ) -> None:
        self.tool_calls.append({
            "call_id": call_id, "name": name, "args": args, "result": result, "ok": ok,
            "duration_s": round(duration_s, 3), "at_s": self.seconds(at_sample),
        })  # fmt: skip

    def add_interruption(self, at_sample: int) -> None:
        self._open_turn = None  # speech after a barge-in is a new turn
        self.interruptions.append({"at_s": self.seconds(at_sample)})

    def add_reconnect(self, at_sample: int, reason: str, kind: str = "resumed") -> None:
        self.reconnects.append({"at_s": self.seconds(at_sample), "reason": reason, "kind": kind})

    def add_dtmf(self, digit: str, at_sample: int) -> None:
        self.dtmf.append({"digit": digit, "at_s": self.seconds(at_sample)})

    def add_note(self, kind: str, detail: str, at_sample: int) -> None:
        self.notes.append({"kind": kind, "detail": detail, "at_s": self.seconds(at_sample)})

    def add_usage(self, counts: Mapping[str, object], prefix: str = "") -> None:
        """Sum integer token counts; nested mappings become dotted keys, others are ignored."""
        for key, value in counts.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                self.add_usage(value, prefix=f"{name}.")
            elif isinstance(value, int) and not isinstance(value, bool):
                self.usage[name] = self.usage.get(name, 0) + value

    def events(self) -> Json:
        for line in self.transcript:
            line["text"] = " ".join(str(line["text"]).split())
        return {
            "transcript": self.transcript,
            "tool_calls": self.tool_calls,
            "interruptions": self.interruptions,
            "reconnects": self.reconnects,
            "dtmf": self.dtmf,
            "notes": self.notes,
            "usage": self.usage,
        }


def build_record(
    *,
    call_sid: str,
    meta: Mapping[str, object],
    started_at: datetime,
    ended_at: datetime,
    duration_s: float,
    end_reason: str,
    recording: Json,
    events: Json,
) -> Json:
    """The call record in its documented field order."""
    clean = safe_meta(meta)
    return {
        "schema_version": SCHEMA_VERSION,
        "call_sid": call_sid,
        "stream_sid": clean.get("stream_sid"),
        "from": clean.get("from"),
        "to": clean.get("to"),
        "agent": clean.get("agent"),  # who answered (app/agents); None in older records
        # "inbound" for a phone call, "web" for a console call from a browser.
        "direction": clean.get("direction") or "inbound",
        "started_at": iso_utc(started_at),
        "ended_at": iso_utc(ended_at),
        "duration_s": round(duration_s, 3),
        "end_reason": end_reason,
        **events,
        "recording": recording,
        "meta": clean,
    }


def write_json_atomic(path: Path, document: Json) -> None:
    """Write, fsync, then rename over `path`: readers see the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    data = orjson.dumps(document, option=_JSON_OPTIONS, default=str)
    with tmp.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Json | None:
    """A call record, or None when it is missing or not a JSON object."""
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
