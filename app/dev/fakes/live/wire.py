"""The Live API wire format, both directions, as pure functions (no sockets, no asyncio).

Client -> server frames are JSON with mixed casing: google-genai sends the top-level keys
in snake_case (`setup`, `realtime_input`, `client_content`, `tool_response`) and the inside
in either case (`mime_type`, `functionResponses`, ...), so every lookup here tries both.
The SDK base64-encodes realtime audio with the URL-safe alphabet; other clients use the
standard one; both decode.

Server -> client frames are camelCase only, and only with top-level keys the SDK knows
(`setupComplete`, `serverContent`, `toolCall`, `toolCallCancellation`, `usageMetadata`,
`goAway`, `sessionResumptionUpdate`): an unknown key makes google-genai raise TypeError.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Live endpoint path; google-genai builds `{base_url}/ws/google.ai.generativelanguage.
#: {version}.GenerativeService.BidiGenerateContent`, so a base_url ending in "/" gives "//ws".
PATH_RE = re.compile(
    r"^/+ws/google\.ai\.generativelanguage\.(?P<version>v1beta|v1alpha|v1)"
    r"\.GenerativeService\.(?P<method>BidiGenerateContent(?:Constrained)?)/?(?:\?.*)?$"
)
#: Vertex AI's Live endpoint: `{base}/ws/google.cloud.aiplatform.{version}.LlmBidiService/
#: BidiGenerateContent` (google-genai 3.6 `live.py`), authenticated with a Bearer token.
VERTEX_PATH_RE = re.compile(
    r"^/+ws/google\.cloud\.aiplatform\.(?P<version>v1beta1|v1)"
    r"\.LlmBidiService/(?P<method>BidiGenerateContent)/?(?:\?.*)?$"
)
#: A Vertex model path: projects/P/locations/L/publishers/google/models/M.
VERTEX_MODEL_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/publishers/[^/]+/models/(.+)$")

OUTPUT_MIME = "audio/pcm;rate=24000"
OUTPUT_RATE = 24_000
INPUT_RATE = 16_000


class WireError(ValueError):
    """A client frame the server cannot read (closed with 1007, as Google does)."""


# --- lookups tolerant of casing -----------------------------------------------------


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def pick(obj: Any, snake: str) -> Any:
    """`obj[snake]` or `obj[camelCase(snake)]`, None if absent or obj is not a dict."""
    if not isinstance(obj, dict):
        return None
    if snake in obj:
        return obj[snake]
    return obj.get(_camel(snake))


def decode_b64(data: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not."""
    text = data.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise WireError(f"invalid base64 audio: {exc}") from exc


def rate_of(mime_type: str, default: int = INPUT_RATE) -> int:
    """The `rate=` parameter of an `audio/pcm;rate=16000` MIME type."""
    match = re.search(r"rate=(\d+)", mime_type or "")
    return int(match.group(1)) if match else default


# --- client -> server ---------------------------------------------------------------


@dataclass(frozen=True)
class AudioChunk:
    pcm: bytes
    mime_type: str

    @property
    def rate(self) -> int:
        return rate_of(self.mime_type)


@dataclass(frozen=True)
class Setup:
    raw: dict[str, Any]

    @property
    def model(self) -> str:
        return str(pick(self.raw, "model") or "")

    @property
    def resumption(self) -> dict[str, Any] | None:
        """The `sessionResumption` config (possibly `{}`), None when not asked for."""
        value = pick(self.raw, "session_resumption")
        return value if isinstance(value, dict) else None

    @property
    def resumption_handle(self) -> str | None:
        handle = pick(self.resumption, "handle")
        return str(handle) if handle else None

    @property
    def automatic_vad(self) -> bool:
        """False when realtimeInputConfig.automaticActivityDetection.disabled is true."""
        cfg = pick(pick(self.raw, "realtime_input_config"), "automatic_activity_detection")
        return not bool(pick(cfg, "disabled"))

    @property
    def barge_in_allowed(self) -> bool:
        """activityHandling NO_INTERRUPTION turns barge-in off."""
        handling = pick(pick(self.raw, "realtime_input_config"), "activity_handling")
        return bool(handling != "NO_INTERRUPTION")


@dataclass(frozen=True)
class RealtimeInput:
    audio: tuple[AudioChunk, ...] = ()
    text: str | None = None
    activity_start: bool = False
    activity_end: bool = False
    audio_stream_end: bool = False


@dataclass(frozen=True)
class ClientContent:
    texts: tuple[str, ...]
    turn_complete: bool
    raw: dict[str, Any]


@dataclass(frozen=True)
class FunctionResponse:
    id: str | None
    name: str | None
    response: dict[str, Any]
    raw: dict[str, Any]


@dataclass(frozen=True)
class ToolResponse:
    responses: tuple[FunctionResponse, ...]


@dataclass(frozen=True)
class Other:
    """A frame the fake accepts and ignores (e.g. a context update)."""

    keys: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False)


ClientMessage = Setup | RealtimeInput | ClientContent | ToolResponse | Other


def parse_client_message(frame: str | bytes) -> ClientMessage:
    """One client frame (text or binary JSON) as a typed message."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise WireError("Invalid JSON payload received.") from exc
    if not isinstance(obj, dict):
        raise WireError("Invalid JSON payload received: not an object.")
    if (setup := pick(obj, "setup")) is not None:
        return Setup(raw=_as_dict(setup))
    if (rt := pick(obj, "realtime_input")) is not None:
        return _realtime_input(_as_dict(rt))
    if (cc := pick(obj, "client_content")) is not None:
        return _client_content(_as_dict(cc))
    if (tr := pick(obj, "tool_response")) is not None:
        return _tool_response(_as_dict(tr))
    return Other(keys=tuple(obj), raw=obj)


def _as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"expected an object, got {type(value).__name__}")
    return value


def _blob(value: Any) -> AudioChunk | None:
    if not isinstance(value, dict) or pick(value, "data") is None:
        return None
    mime = str(pick(value, "mime_type") or "")
    return AudioChunk(pcm=decode_b64(str(pick(value, "data"))), mime_type=mime)


def _realtime_input(rt: dict[str, Any]) -> RealtimeInput:
    blobs = [pick(rt, "audio")]
    # `mediaChunks` is the older form (deprecated `send`/`start_stream` still use it).
    blobs += list(pick(rt, "media_chunks") or [])
    audio = tuple(
        chunk
        for chunk in map(_blob, blobs)
        if chunk is not None and chunk.mime_type.startswith("audio/")
    )
    text = pick(rt, "text")
    return RealtimeInput(
        audio=audio,
        text=str(text) if text is not None else None,
        activity_start=pick(rt, "activity_start") is not None,
        activity_end=pick(rt, "activity_end") is not None,
        audio_stream_end=bool(pick(rt, "audio_stream_end")),
    )


def _client_content(cc: dict[str, Any]) -> ClientContent:
    texts: list[str] = []
    for turn in pick(cc, "turns") or []:
        for part in pick(turn, "parts") or []:
            if isinstance(text := pick(part, "text"), str):
                texts.append(text)
    return ClientContent(texts=tuple(texts), turn_complete=bool(pick(cc, "turn_complete")), raw=cc)


def _tool_response(tr: dict[str, Any]) -> ToolResponse:
    responses = []
    for fr in pick(tr, "function_responses") or []:
        fr = _as_dict(fr)
        response = pick(fr, "response")
        responses.append(
            FunctionResponse(
                id=_str_or_none(pick(fr, "id")),
                name=_str_or_none(pick(fr, "name")),
                response=response if isinstance(response, dict) else {},
                raw=fr,
            )
        )
    return ToolResponse(responses=tuple(responses))


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# --- server -> client ---------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """A server message as the JSON text of one frame."""
    return orjson.dumps(message).decode()


def setup_complete(session_id: str) -> dict[str, Any]:
    return {"setupComplete": {"sessionId": session_id}}


def audio_part(pcm: bytes) -> dict[str, Any]:
    data = base64.b64encode(pcm).decode("ascii")  # the server uses the standard alphabet
    return {"inlineData": {"mimeType": OUTPUT_MIME, "data": data}}


def server_content(
    *,
    audio: bytes | None = None,
    input_text: str | None = None,
    output_text: str | None = None,
    interrupted: bool = False,
    generation_complete: bool = False,
    turn_complete: bool = False,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One serverContent message; the fields are independent and may be bundled."""
    content: dict[str, Any] = {}
    if audio is not None:
        content["modelTurn"] = {"parts": [audio_part(audio)]}
    if input_text is not None:
        content["inputTranscription"] = {"text": input_text}
    if output_text is not None:
        content["outputTranscription"] = {"text": output_text}
    if interrupted:
        content["interrupted"] = True
    if generation_complete:
        content["generationComplete"] = True
    if turn_complete:
        content["turnComplete"] = True
    message: dict[str, Any] = {"serverContent": content}
    if usage is not None:
        message["usageMetadata"] = usage
    return message


def usage_metadata(
    prompt_tokens: int, response_tokens: int, *, vertex: bool = False
) -> dict[str, Any]:
    """Usage with per-modality details (so prompt + response need not be total on a real
    server). Vertex AI names the response count `candidatesTokenCount`."""
    response_key = "candidatesTokenCount" if vertex else "responseTokenCount"
    details_key = "candidatesTokensDetails" if vertex else "responseTokensDetails"
    return {
        "promptTokenCount": prompt_tokens,
        response_key: response_tokens,
        "totalTokenCount": prompt_tokens + response_tokens,
        "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": prompt_tokens}],
        details_key: [{"modality": "AUDIO", "tokenCount": response_tokens}],
    }


def tool_call(calls: list[tuple[str | None, str, dict[str, Any]]]) -> dict[str, Any]:
    """`toolCall` for (id, name, args) triples; a None id is left out (as Vertex does)."""
    return {
        "toolCall": {
            "functionCalls": [
                {"name": n, "args": a} if i is None else {"id": i, "name": n, "args": a}
                for i, n, a in calls
            ]
        }
    }


def tool_call_cancellation(ids: list[str]) -> dict[str, Any]:
    return {"toolCallCancellation": {"ids": ids}}


def session_resumption_update(handle: str) -> dict[str, Any]:
    return {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}


def go_away(time_left: float) -> dict[str, Any]:
    # timeLeft is a protobuf Duration in JSON form: seconds with an "s" suffix.
    return {"goAway": {"timeLeft": f"{time_left:g}s"}}
