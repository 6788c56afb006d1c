"""Call recordings and call records: what was said and heard, written off the event loop.

    CallRecorder        one call: stereo WAV (caller left, agent right) + JSON record
    RecordingResult     what a closed recorder left behind
    repair_recordings   run at start: fix WAVs and records left by a crash
    prune_recordings    retention: delete calls older than N days
    CALL_SID_RE         the call sids accepted as file names

The file format and the record's schema are in docs/recordings.md.
"""

from app.recording.files import (
    CALL_SID_RE,
    call_file,
    is_call_sid,
    prune_recordings,
    repair_recordings,
)
from app.recording.mp3 import mp3_available
from app.recording.recorder import CallRecorder
from app.recording.writer import Opener, RecordingResult, open_new_file

__all__ = [
    "CALL_SID_RE",
    "CallRecorder",
    "Opener",
    "RecordingResult",
    "call_file",
    "is_call_sid",
    "mp3_available",
    "open_new_file",
    "prune_recordings",
    "repair_recordings",
]
