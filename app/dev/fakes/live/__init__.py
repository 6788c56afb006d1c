"""A fake Gemini Live server for tests, the demo and benchmarks (see README.md).

It speaks the real wire protocol over TLS so the real google-genai SDK connects to it;
it never imports google.genai itself.
"""

from app.dev.fakes.live.clips import CLIPS, clip_duration, clip_text, load_clip
from app.dev.fakes.live.records import Conversation, SessionRecord, ToolCheck, TranscriptLine
from app.dev.fakes.live.scenario import (
    AudioConfig,
    BargeInConfig,
    Faults,
    Refusal,
    Reply,
    Scenario,
    ToolCallSpec,
    VadConfig,
)
from app.dev.fakes.live.server import FakeLiveServer
from app.dev.fakes.live.tls import ThrowawayCA

__all__ = [
    "CLIPS",
    "AudioConfig",
    "BargeInConfig",
    "Conversation",
    "FakeLiveServer",
    "Faults",
    "Refusal",
    "Reply",
    "Scenario",
    "SessionRecord",
    "ThrowawayCA",
    "ToolCallSpec",
    "ToolCheck",
    "TranscriptLine",
    "VadConfig",
    "clip_duration",
    "clip_text",
    "load_clip",
]
