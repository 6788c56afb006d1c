"""Server messages -> the bridge's events, for the direct client: pure, no I/O.

The same job as `app.live.sdk.translate` does on google-genai's parsed messages (tests
feed the same JSON to both). The server writes camelCase; snake_case is read too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from app.live.events import (
    AgentAudio,
    AgentTranscript,
    CallerTranscript,
    GenerationComplete,
    GoAway,
    Interrupted,
    LiveEvent,
    ResumptionUpdate,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Usage,
)
from app.live.options import is_audio_mime, parse_bool, parse_duration, rate_of


def translate_message(message: Mapping[str, Any]) -> list[LiveEvent]:
    """Every event one server message carries, in the order of `adapter.translate`.

    Each field is looked at on its own (newer models bundle audio, transcripts and
    turnComplete in one message). The server writes camelCase; snake_case is read too.
    """
    events: list[LiveEvent] = []
    content = pick(message, "serverContent", "server_content")
    if content is not None:
        text = _text(pick(content, "inputTranscription", "input_transcription"))
        if text:
            events.append(CallerTranscript(text))
        turn = pick(content, "modelTurn", "model_turn")
        if turn is not None:
            for part in turn.get("parts") or ():
                blob = pick(part, "inlineData", "inline_data")
                if blob is None:
                    continue
                data = blob.get("data")
                mime = pick(blob, "mimeType", "mime_type")
                if data and is_audio_mime(mime):
                    events.append(AgentAudio(decode_b64(data), rate_of(mime)))
        text = _text(pick(content, "outputTranscription", "output_transcription"))
        if text:
            events.append(AgentTranscript(text))
        if content.get("interrupted"):
            events.append(Interrupted())
        if pick(content, "generationComplete", "generation_complete"):
            events.append(GenerationComplete())
        if pick(content, "turnComplete", "turn_complete"):
            status = pick(content, "interactionStatus", "interaction_status")
            events.append(TurnComplete(in_progress=status == "IN_PROGRESS"))
    tool_call = pick(message, "toolCall", "tool_call")
    if tool_call is not None:
        for call in pick(tool_call, "functionCalls", "function_calls") or ():
            args = call.get("args") or {}
            events.append(ToolCall(str(call.get("id") or ""), call.get("name") or "", dict(args)))
    cancellation = pick(message, "toolCallCancellation", "tool_call_cancellation")
    if cancellation is not None and (ids := cancellation.get("ids")):
        events.append(ToolCallCancellation(tuple(str(i) for i in ids)))
    update = pick(message, "sessionResumptionUpdate", "session_resumption_update")
    if update is not None:
        handle = pick(update, "newHandle", "new_handle")
        events.append(ResumptionUpdate(handle or None, parse_bool(update.get("resumable"))))
    go_away = pick(message, "goAway", "go_away")
    if go_away is not None:
        events.append(GoAway(parse_duration(pick(go_away, "timeLeft", "time_left"))))
    usage = pick(message, "usageMetadata", "usage_metadata")
    if usage is not None:
        events.append(usage_of(usage))
    return events


def usage_of(usage: Mapping[str, Any]) -> Usage:
    """`usageMetadata` (Gemini API or Vertex AI naming) as a `Usage` event."""

    def count(camel: str, snake: str) -> int:
        return int(pick(usage, camel, snake) or 0)

    response = count("responseTokenCount", "response_token_count") or count(
        "candidatesTokenCount", "candidates_token_count"
    )
    response_details = pick(usage, "responseTokensDetails", "response_tokens_details") or pick(
        usage, "candidatesTokensDetails", "candidates_tokens_details"
    )
    return Usage(
        count("promptTokenCount", "prompt_token_count"),
        response,
        count("totalTokenCount", "total_token_count"),
        count("thoughtsTokenCount", "thoughts_token_count"),
        count("toolUsePromptTokenCount", "tool_use_prompt_token_count"),
        count("cachedContentTokenCount", "cached_content_token_count"),
        _by_modality(pick(usage, "promptTokensDetails", "prompt_tokens_details")),
        _by_modality(response_details),
    )


def _by_modality(details: Any) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in details or ():
        modality = str(item.get("modality") or "MODALITY_UNSPECIFIED")
        totals[modality] = totals.get(modality, 0) + int(
            pick(item, "tokenCount", "token_count") or 0
        )
    return totals


def decode_b64(data: str) -> bytes:
    """Standard base64 (what the server sends) fast; URL-safe or unpadded as a fallback.

    `a2b_base64` silently drops characters outside the standard alphabet, so URL-safe
    input must be spotted before it is used.
    """
    if "-" in data or "_" in data:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return binascii.a2b_base64(data + "=" * (-len(data) % 4))


def audio_only(message: Mapping[str, Any]) -> AgentAudio | None:
    """The message if it is the common one, a single audio part and nothing else, as
    its event; None for anything else (`translate_message` then reads every field).

    Most of a call's messages are this one, 50 a second while the agent speaks: one
    lookup per level (each level must hold exactly the one key looked up, so nothing
    else in the message can be skipped) instead of every field's camel and snake case.
    """
    if len(message) != 1 or (content := message.get("serverContent")) is None:
        return None
    if len(content) != 1 or (turn := content.get("modelTurn")) is None or len(turn) != 1:
        return None
    parts = turn.get("parts")
    if type(parts) is not list or len(parts) != 1:
        return None
    part = parts[0]
    if type(part) is not dict or len(part) != 1 or (blob := part.get("inlineData")) is None:
        return None
    if len(blob) != 2 or not (data := blob.get("data")) or type(data) is not str:
        return None
    mime = blob.get("mimeType")
    if type(mime) is not str or not is_audio_mime(mime):
        return None
    return AgentAudio(decode_b64(data), rate_of(mime))


def pick(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _text(transcription: Any) -> str | None:
    return None if transcription is None else transcription.get("text")
