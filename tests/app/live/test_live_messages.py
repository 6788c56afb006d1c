"""Server messages, through both Live clients: the same JSON to both translators (pure),
and the protocol's edge cases (protocols.md §5, real message shapes) over the fake."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from google.genai import types

from app.live.direct import translate_message
from app.live.events import (
    AgentAudio,
    AgentTranscript,
    GoAway,
    LiveEvent,
    ResumptionUpdate,
    ToolCall,
    ToolResponse,
    TurnComplete,
    Usage,
)
from app.live.messages import audio_only
from app.live.options import unknown_kinds
from app.live.sdk import translate
from app.metrics import Metrics
from tests.app.live.conftest import Client
from tests.app.live.test_live_direct import collect, opened, options_for, seen
from tests.support.fake_live import FakeLiveFactory

# Real shapes: the Live API docs, google-genai 3.6's test fixtures, js-genai.
USAGE_FULL = {
    "promptTokenCount": 120,
    "responseTokenCount": 40,
    "totalTokenCount": 190,
    "thoughtsTokenCount": 20,
    "toolUsePromptTokenCount": 6,
    "cachedContentTokenCount": 4,
    "promptTokensDetails": [
        {"modality": "AUDIO", "tokenCount": 100},
        {"modality": "TEXT", "tokenCount": 20},
    ],
    "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 40}],
}
TABLE: list[tuple[str, dict[str, Any], list[LiveEvent]]] = [
    ("setup complete", {"setupComplete": {"sessionId": "s-1"}}, []),
    (
        "turn complete in progress",
        {"serverContent": {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}},
        [TurnComplete(in_progress=True)],
    ),
    (
        "turn complete with reason and waiting",
        {
            "serverContent": {
                "turnComplete": True,
                "turnCompleteReason": "NEED_MORE_INPUT",
                "waitingForInput": True,
            }
        },
        [TurnComplete()],
    ),
    (
        "tool call without id",
        {"toolCall": {"functionCalls": [{"name": "lookup", "args": {"q": "x"}}]}},
        [ToolCall("", "lookup", {"q": "x"})],
    ),
    (
        "resumable as a string",
        {"sessionResumptionUpdate": {"newHandle": "h-1", "resumable": "true"}},
        [ResumptionUpdate("h-1", True)],
    ),
    (
        "resumption update with last consumed index",
        {
            "sessionResumptionUpdate": {
                "newHandle": "h-2",
                "resumable": True,
                "lastConsumedClientMessageIndex": "17",
            }
        },
        [ResumptionUpdate("h-2", True)],
    ),
    (
        "not resumable",
        {"sessionResumptionUpdate": {"resumable": False}},
        [ResumptionUpdate(None, False)],
    ),
    (
        "usage with thoughts, tool-use prompt, cached and modality details",
        {"usageMetadata": USAGE_FULL},
        [
            Usage(120, 40, 190, 20, 6, 4, {"AUDIO": 100, "TEXT": 20}, {"AUDIO": 40}),
        ],
    ),
    (
        "transcription with finished",
        {"serverContent": {"outputTranscription": {"text": "Bye.", "finished": True}}},
        [AgentTranscript("Bye.")],
    ),
    (
        "voice activity signal (ignored)",
        {"voiceActivityDetectionSignal": {"vadSignalType": "VAD_SIGNAL_TYPE_SOS"}},
        [],
    ),
    ("voice activity (ignored)", {"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}}, []),
    ("go away", {"goAway": {"timeLeft": "50s"}}, [GoAway(50.0)]),
    (
        "audio",
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [
                        {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AQACAA=="}}
                    ]
                }
            }
        },
        [AgentAudio(b"\x01\x00\x02\x00", 24000)],
    ),
    (
        "audio bundled with a transcript and turnComplete",
        {
            "serverContent": {
                "modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "AQA="}}]},
                "outputTranscription": {"text": "Hi."},
                "turnComplete": True,
            }
        },
        [AgentAudio(b"\x01\x00", 24000), AgentTranscript("Hi."), TurnComplete()],
    ),
    (
        "audio with usage alongside",
        {
            "serverContent": {
                "modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "AQA="}}]}
            },
            "usageMetadata": {"totalTokenCount": 3},
        },
        [AgentAudio(b"\x01\x00", 24000), Usage(total_tokens=3)],
    ),
]


@pytest.mark.parametrize(
    ("message", "expected"), [(m, e) for _, m, e in TABLE], ids=[name for name, _, _ in TABLE]
)
def test_both_translators_agree(message: dict[str, Any], expected: list[LiveEvent]) -> None:
    assert translate_message(message) == expected
    # google-genai's own model of the message (validated from the same camelCase JSON).
    assert translate(types.LiveServerMessage.model_validate(message)) == expected


def test_the_audio_only_shortcut_takes_nothing_but_a_lone_audio_part() -> None:
    """`audio_only` answers for the common message only; anything more in it (another
    field at any level, a second part) goes through the full reading."""
    blob = {"mimeType": "audio/pcm;rate=24000", "data": "AQA="}
    plain = {"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}]}}}
    assert audio_only(plain) == AgentAudio(b"\x01\x00", 24000)
    richer: list[dict[str, Any]] = [
        {**plain, "usageMetadata": {"totalTokenCount": 3}},
        {"serverContent": {**plain["serverContent"], "turnComplete": True}},
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}], "role": "model"}}},
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}] * 2}}},
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": blob, "thought": True}]}}},
        {"serverContent": {"modelTurn": {"parts": [{"text": "hi"}]}}},
        {"server_content": {"model_turn": {"parts": [{"inline_data": blob}]}}},
    ]
    for message in richer:
        assert audio_only(message) is None, message
        assert translate_message(message) == translate(
            types.LiveServerMessage.model_validate(message)
        )


@pytest.mark.parametrize(
    ("message", "kinds"),
    [
        ({"error": {"code": 400, "message": "secret caller words"}}, ["error"]),
        ({"somethingNew": {}, "serverContent": {"turnComplete": True}}, ["somethingNew"]),
        ({"voiceActivity": {}}, []),
        ({"tool_call": {}}, []),
        ({"weird key!": 1}, ["weirdkey"]),
    ],
)
def test_unknown_kinds_are_named_never_their_content(
    message: dict[str, Any], kinds: list[str]
) -> None:
    assert unknown_kinds(message) == kinds


# --- edge cases through both clients, against the fake ------------------------------------


class Seen:
    """A LiveObserver that keeps what it is told (a test double, passed in openly)."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def unknown_message(self, kind: str) -> None:
        self.kinds.append(kind)


async def test_unknown_and_error_frames_are_logged_once_and_counted(
    fake_live_factory: FakeLiveFactory, client: Client
) -> None:
    secret = "caller said their PIN is 4242"
    raw = [
        {"error": {"code": 400, "message": secret}},
        {"somethingNew": {"text": secret}},
        {"somethingNew": {"text": secret}},
        {"voiceActivityDetectionSignal": {"vadSignalType": "VAD_SIGNAL_TYPE_SOS"}},
        {"voiceActivity": {"voiceActivityType": "ACTIVITY_END"}},
    ]
    server = await fake_live_factory(
        {"greeting": {"clip": "greeting", "raw": raw}, "audio": {"speed": 0}}
    )
    observer = Seen()
    with structlog.testing.capture_logs() as logs:
        async with opened(client(options_for(server, observer=observer))) as session:
            await session.send_text("hi")
            events = await collect(session, seen(TurnComplete))
    assert any(isinstance(e, AgentAudio) for e in events)  # the session went on
    assert observer.kinds == ["error", "somethingNew", "somethingNew"]
    unknown = [entry for entry in logs if entry["event"] == "live.unknown_message"]
    assert [entry["kind"] for entry in unknown] == ["error", "somethingNew"]
    assert secret not in repr(logs)


def test_metrics_count_unknown_kinds_with_a_bounded_label_set() -> None:
    metrics = Metrics()
    for i in range(30):
        metrics.unknown_message(f"kind{i}")
    metrics.unknown_message("kind0")
    text = metrics.render().decode()
    assert 'voicebot_live_unknown_messages_total{kind="kind0"} 2.0' in text
    assert 'voicebot_live_unknown_messages_total{kind="other"} 10.0' in text


async def test_in_progress_turn_complete_then_more_output(
    fake_live_factory: FakeLiveFactory, client: Client
) -> None:
    in_progress = {"serverContent": {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}}
    server = await fake_live_factory(
        {"greeting": {"clip": "greeting", "raw": [in_progress]}, "audio": {"speed": 0}}
    )
    async with opened(client(options_for(server))) as session:
        await session.send_text("hi")
        events = await collect(
            session, lambda es: any(isinstance(e, TurnComplete) and not e.in_progress for e in es)
        )
    turns = [e for e in events if isinstance(e, TurnComplete)]
    assert turns == [TurnComplete(in_progress=True), TurnComplete()]
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, AgentAudio))
    assert events.index(turns[0]) < first_audio  # output follows the in-progress one


async def test_tool_call_without_id_is_answered_by_name_direct(
    fake_live_factory: FakeLiveFactory,
) -> None:
    from app.live.direct import DirectConnector

    server = await fake_live_factory(
        {
            "greeting": {
                "clip": "greeting",
                "tool_calls": [
                    {"name": "lookup", "args": {"q": 1}, "omit_id": True, "expect": {"found": True}}
                ],
            },
            "audio": {"speed": 0},
        }
    )
    async with opened(DirectConnector(options_for(server))) as session:

        async def answer(event: LiveEvent) -> None:
            if isinstance(event, ToolCall):
                await session.send_tool_responses(
                    [ToolResponse(event.call_id, event.name, {"found": True})]
                )

        await session.send_text("hi")
        events = await collect(session, seen(TurnComplete), on_event=answer)
    assert [e for e in events if isinstance(e, ToolCall)] == [ToolCall("", "lookup", {"q": 1})]
    (response,) = server.sessions[0].tool_responses
    assert "id" not in response and response["name"] == "lookup"
    (check,) = server.sessions[0].tool_checks
    assert check.passed and check.outcome == "answered"


def test_usage_counts_keep_the_old_keys_and_add_the_new_in_the_call_record() -> None:
    from app.recording.record import CallLog

    log = CallLog(sample_rate=8000)
    (usage,) = translate_message({"usageMetadata": USAGE_FULL})
    assert isinstance(usage, Usage)
    log.add_usage(usage.counts())
    log.add_usage(usage.counts())  # summed over the call
    assert log.usage == {
        "prompt_tokens": 240,
        "response_tokens": 80,
        "total_tokens": 380,
        "thoughts_tokens": 40,
        "tool_use_prompt_tokens": 12,
        "cached_tokens": 8,
        "prompt_tokens_by_modality.AUDIO": 200,
        "prompt_tokens_by_modality.TEXT": 40,
        "response_tokens_by_modality.AUDIO": 80,
    }
    metrics = Metrics()
    metrics.live_tokens_used(usage.counts())
    text = metrics.render().decode()
    assert 'voicebot_live_tokens_total{kind="thoughts"} 20.0' in text
    assert 'voicebot_live_tokens_total{kind="prompt"} 120.0' in text


async def test_sdk_client_drops_an_id_less_response_on_the_gemini_api_with_an_error_log(
    fake_live_factory: FakeLiveFactory,
) -> None:
    """google-genai refuses an id-less function response on the Gemini API (which always
    sends ids): the SDK client logs it and sends nothing rather than fail the session."""
    from app.live.sdk import GeminiConnector

    server = await fake_live_factory({"audio": {"speed": 0}})
    with structlog.testing.capture_logs() as logs:
        async with opened(GeminiConnector(options_for(server))) as session:
            await session.send_tool_responses([ToolResponse("", "lookup", {"ok": True})])
            await session.send_tool_responses(
                [ToolResponse("", "lookup", {}), ToolResponse("c2", "other", {"ok": True})]
            )
    async with asyncio.timeout(5):
        await server.sessions[0].wait_closed()
    assert [e["tools"] for e in logs if e["event"] == "live.tool_response_without_id"] == [
        ["lookup"],
        ["lookup", "other"],
    ]
    assert [r["id"] for r in server.sessions[0].tool_responses] == ["c2"]
