"""The direct Live client: the Live wire protocol over one `websockets` connection.

Why: under load the google-genai SDK's per-message work (pydantic validation,
converters, stdlib json, URL-safe base64) was the biggest CPU item of the server
(~40% of the event loop for 20 ms audio frames, ~13% on receive). This client sends
and reads the same JSON as the SDK (the Live API's BidiGenerateContent messages) with
orjson and binascii, and implements the same `LiveConnector` / `LiveSession`
interfaces. The SDK adapter (`app.live.sdk`) stays as the reference and fallback
(`LIVE_CLIENT=sdk`).

Wire choices, all mirroring google-genai 3.4 so the server sees what it already knows:
- URL `wss://{host}/ws/google.ai.generativelanguage.{version}.GenerativeService.
  BidiGenerateContent` (the scheme is forced to wss; a trailing slash is dropped).
- Header `x-goog-api-key`; an ephemeral token (`auth_tokens/...`) also goes as
  `Authorization: Token ...` to `BidiGenerateContentConstrained`.
- The setup message has the SDK's keys and casing (`GeminiConnector.config`).
- Audio goes as `{"realtime_input":{"audio":{"data":...,"mime_type":...}}}` with
  standard base64 (protobuf JSON; the SDK's URL-safe alphabet is accepted as well).

Errors: a close before setupComplete is `LiveSetupError` with the close code and
reason; any close afterwards not made by us, even code 1000, is `LiveClosedError`.
A malformed server frame (not JSON, not an object, wrong types) is treated as a broken
connection: the socket is closed and `events()` raises `LiveClosedError`, so the
`LiveLink` resumes on a fresh connection rather than the call going on half-deaf.
Unknown keys are ignored (the SDK raises TypeError on unknown top-level keys).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import platform
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CLOSE_CODE_EXPLANATIONS

from app.errors import LiveClosedError, LiveSetupError
from app.live.events import (
    LiveEvent,
    SessionInfo,
    ToolResponse,
)
from app.live.messages import audio_only, pick, translate_message
from app.live.messages import decode_b64 as decode_b64
from app.live.messages import usage_of as usage_of
from app.live.options import (
    INPUT_MIME,
    KindReporter,
    LiveOptions,
    VertexTarget,
    instructions_with,
    unknown_kinds,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# Generous but bounded: Live messages are a few KB of audio; a runaway server must not
# make us buffer without limit (websockets' default is 1 MiB).
MAX_MESSAGE_BYTES = 16 * 2**20
# The server acknowledges a close at once; a dead peer must not hold up a call's teardown
# or a setup error for websockets' default 10 s (after this the TCP connection is aborted).
CLOSE_TIMEOUT_S = 2.0
_CLIENT_LABEL = f"voicebot-direct gl-python/{platform.python_version()}"

# One 20 ms frame is `head + base64(pcm) + tail`: the constant parts are encoded once.
_AUDIO_HEAD = b'{"realtime_input":{"audio":{"data":"'
_AUDIO_TAIL = b'","mime_type":' + orjson.dumps(INPUT_MIME) + b"}}}"
_AUDIO_STREAM_END = b'{"realtime_input":{"audioStreamEnd":true}}'
_ACTIVITY_START = b'{"realtime_input":{"activityStart":{}}}'
_ACTIVITY_END = b'{"realtime_input":{"activityEnd":{}}}'
_b2a = binascii.b2a_base64


def live_url(base_url: str | None, api_version: str, *, constrained: bool = False) -> str:
    """The Live endpoint for `base_url`, as google-genai builds it (scheme forced to wss)."""
    parts = urlsplit(base_url or DEFAULT_BASE_URL)
    prefix = parts.path.rstrip("/")  # "https://host/" must not give "//ws/..."
    method = "BidiGenerateContentConstrained" if constrained else "BidiGenerateContent"
    return (
        f"wss://{parts.netloc}{prefix}/ws/google.ai.generativelanguage."
        f"{api_version}.GenerativeService.{method}"
    )


def vertex_url(base_url: str | None, location: str, api_version: str) -> str:
    """Vertex AI's Live endpoint, as google-genai 3.6 builds it: the regional host
    (`global` and the multi-regions `us`/`eu` have their own), or `base_url` if set."""
    if base_url:
        parts = urlsplit(base_url)
        host, prefix = parts.netloc, parts.path.rstrip("/")
    else:
        prefix = ""
        if location == "global":
            host = "aiplatform.googleapis.com"
        elif location in ("us", "eu"):
            host = f"aiplatform.{location}.rep.googleapis.com"
        else:
            host = f"{location}-aiplatform.googleapis.com"
    return (
        f"wss://{host}{prefix}/ws/google.cloud.aiplatform."
        f"{api_version}.LlmBidiService/BidiGenerateContent"
    )


def model_name(model: str, vertex: VertexTarget | None = None) -> str:
    """The model as the SDK sends it: `models/<name>` for the Gemini API;
    `projects/P/locations/L/publishers/google/models/<name>` for Vertex AI.
    Names already qualified are kept."""
    if vertex is None:
        return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    if model.startswith("projects/"):
        return model
    if not model.startswith("publishers/"):
        model = f"publishers/google/models/{model.removeprefix('models/')}"
    return f"projects/{vertex.project}/locations/{vertex.location}/{model}"


def setup_message(
    options: LiveOptions, resume_handle: str | None, history: str | None = None
) -> dict[str, Any]:
    """The `setup` frame, with the same keys and casing google-genai 3.6 sends for
    `GeminiConnector.config(resume_handle)` (tests compare the two on the fake, for the
    Gemini API and for Vertex AI). `history`: a fresh session's context (see
    `instructions_with`). Per-session options go here, in one place."""
    instructions = instructions_with(options.instructions, history)
    speech: dict[str, Any] = {
        "voice_config": {"prebuilt_voice_config": {"voice_name": options.voice}}
    }
    if options.language is not None:
        speech["language_code"] = options.language
    generation: dict[str, Any] = {"responseModalities": ["AUDIO"], "speechConfig": speech}
    if options.thinking_budget is not None:
        generation["thinkingConfig"] = {"thinking_budget": options.thinking_budget}
    if options.affective_dialog is not None:
        generation["enableAffectiveDialog"] = options.affective_dialog
    setup: dict[str, Any] = {
        "model": model_name(options.model, options.vertex),
        "generationConfig": generation,
        "systemInstruction": {"parts": [{"text": instructions}], "role": "user"},
    }
    if options.tool_declarations:
        # Declarations are already in the SDK's dump form (`parameters_json_schema`, ...);
        # like its `exclude_none`, unset fields are left out.
        declarations = [
            {k: v for k, v in d.items() if v is not None} for d in options.tool_declarations
        ]
        setup["tools"] = [{"functionDeclarations": declarations}]
    # Always ask for resumption handles: a dropped call can only resume with one.
    setup["sessionResumption"] = {} if resume_handle is None else {"handle": resume_handle}
    setup["inputAudioTranscription"] = {}
    setup["outputAudioTranscription"] = {}
    setup["contextWindowCompression"] = {
        "trigger_tokens": options.compression_trigger_tokens,
        "sliding_window": {"target_tokens": options.compression_target_tokens},
    }
    if options.activity_detection is not None:
        setup["realtimeInputConfig"] = {
            "automatic_activity_detection": options.activity_detection.fields()
        }
    if options.proactive_audio is not None:
        setup["proactivity"] = {"proactive_audio": options.proactive_audio}
    return {"setup": setup}


class DirectConnector:
    """Opens `DirectSession`s; holds no connection itself."""

    def __init__(self, options: LiveOptions) -> None:
        self._options = options
        self._vertex = options.vertex
        self._secrets: list[str] = []
        headers: dict[str, str] = {"x-goog-api-client": _CLIENT_LABEL}
        if self._vertex is not None:
            # Vertex AI: a Bearer token added per connect (see `connect`), no API key.
            self._url = vertex_url(options.base_url, self._vertex.location, options.api_version)
            if quota := self._vertex.tokens.quota_project:
                headers["x-goog-user-project"] = quota  # as google-genai does
        else:
            key = options.api_key.strip()  # the SDK strips it too
            self._secrets.append(key)
            constrained = key.startswith("auth_tokens/")
            self._url = live_url(options.base_url, options.api_version, constrained=constrained)
            headers["x-goog-api-key"] = key
            if constrained:
                # google-genai sends both headers for ephemeral tokens; so do we.
                headers["Authorization"] = f"Token {key}"
        headers.update(options.extra_headers)
        self._headers = headers
        self._ws_args: dict[str, Any] = {
            # No permessage-deflate: zlib on every 20 ms frame of base64 PCM (which
            # barely compresses) cost ~10% of the server's CPU in `voicebot bench`.
            "compression": None,
            # websockets' default 20 s ping timeout has been reported to kill long
            # Live sessions: keepalive is chosen in settings on purpose.
            "ping_interval": options.ping_interval,
            "ping_timeout": options.ping_timeout,
            "open_timeout": options.connect_timeout,
            "close_timeout": CLOSE_TIMEOUT_S,
            "max_size": MAX_MESSAGE_BYTES,
        }
        # Without a context websockets uses ssl.create_default_context(), which also
        # honours SSL_CERT_FILE.
        if options.ssl_context is not None:
            self._ws_args["ssl"] = options.ssl_context

    async def connect(
        self,
        *,
        resume_handle: str | None = None,
        options: LiveOptions | None = None,
        history: str | None = None,
    ) -> DirectSession:
        """`options`: this call's session fields (the connection stays the connector's)."""
        opts = self._options if options is None else options.for_connection(self._options)
        started = time.perf_counter()
        setup = orjson.dumps(setup_message(opts, resume_handle, history))
        ws: ClientConnection | None = None
        headers = self._headers
        try:
            async with asyncio.timeout(opts.connect_timeout):
                if self._vertex is not None:
                    # A fresh (or still valid) token on every connect: the handshake
                    # is the only place Vertex checks it.
                    token = await self._vertex.tokens.token()
                    self._secrets.append(token)
                    del self._secrets[:-3]
                    headers = {**headers, "Authorization": f"Bearer {token}"}
                ws = await ws_connect(self._url, additional_headers=headers, **self._ws_args)
                await ws.send(setup, text=True)
                first = _load(await ws.recv(decode=False))
        except TimeoutError:
            await _quiet_close(ws)
            raise LiveSetupError(
                f"Live setup timed out after {opts.connect_timeout:.0f} s"
            ) from None
        except ConnectionClosed as exc:
            await _quiet_close(ws)
            code, reason = close_of(exc)
            raise LiveSetupError(
                f"Live refused setup: {self._scrub(describe_close(exc))}",
                code=code,
                reason=self._scrub(reason),
            ) from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            # OSError covers DNS, refused connections and TLS (ssl.SSLError); InvalidStatus
            # (an HTTP answer instead of an upgrade) is an InvalidHandshake.
            await _quiet_close(ws)
            cause = self._scrub(f"{type(exc).__name__}: {exc}")
            raise LiveSetupError(f"Live unreachable: {cause}") from None
        except _Malformed:
            await _quiet_close(ws)
            raise LiveSetupError("Live setup failed: the server sent a malformed message") from None
        except BaseException:
            await _quiet_close(ws)  # cancelled while connecting: leave no socket behind
            raise
        assert ws is not None  # connected, or an except clause above raised
        complete = pick(first, "setupComplete", "setup_complete")
        if not isinstance(complete, dict):
            await _quiet_close(ws)
            keys = ", ".join(sorted(first)) or "nothing"
            raise LiveSetupError(f"Live setup failed: expected setupComplete, got {keys}")
        session_id = pick(complete, "sessionId", "session_id")
        info = SessionInfo(
            session_id=session_id if isinstance(session_id, str) else None,
            setup_seconds=time.perf_counter() - started,
            resumed_from=resume_handle,
        )
        return DirectSession(ws, info, KindReporter(opts.observer))

    def _scrub(self, text: str) -> str:
        # Nothing we format should contain the key or a token, but error texts come
        # from libraries. (A key too short to be real would only mangle the text.)
        for secret in self._secrets:
            if len(secret) >= 8:
                text = text.replace(secret, "***")
        return text


class DirectSession:
    """One open Live connection, seen through the `LiveSession` interface."""

    def __init__(
        self, ws: ClientConnection, info: SessionInfo, kinds: KindReporter | None = None
    ) -> None:
        self._ws = ws
        self._send = ws.send
        self.info = info
        self._closed = False
        self._kinds = kinds or KindReporter(None)

    async def send_audio(self, pcm16k: bytes) -> None:
        # The hot path (50 frames per second per call): two concatenations and one
        # base64 pass, sent as UTF-8 bytes in a text frame (no str round trip).
        frame = _AUDIO_HEAD + _b2a(pcm16k, newline=False) + _AUDIO_TAIL
        try:
            await self._send(frame, text=True)
        except ConnectionClosed as exc:
            raise self._send_error(exc) from None

    async def send_audio_stream_end(self) -> None:
        await self._send_frame(_AUDIO_STREAM_END)

    async def send_text(self, text: str) -> None:
        await self._send_frame(orjson.dumps({"realtime_input": {"text": text}}))

    async def send_activity_start(self) -> None:
        await self._send_frame(_ACTIVITY_START)

    async def send_activity_end(self) -> None:
        await self._send_frame(_ACTIVITY_END)

    async def send_tool_responses(self, responses: list[ToolResponse]) -> None:
        # Keys as google-genai serialises `FunctionResponse` (None fields left out).
        function_responses: list[dict[str, Any]] = []
        for r in responses:
            response = dict(r.response)  # orjson serialises dicts, not any Mapping
            item: dict[str, Any] = {"name": r.name, "response": response}
            if r.call_id:
                # A call that came without an id is answered by name alone: an empty
                # id would not match it (as google-genai, which drops a falsy id).
                item = {"id": r.call_id, **item}
            if r.scheduling is not None:
                item["scheduling"] = r.scheduling
            if r.will_continue is not None:
                item["will_continue"] = r.will_continue
            function_responses.append(item)
        message = {"tool_response": {"functionResponses": function_responses}}
        await self._send_frame(orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS))

    async def events(self) -> AsyncIterator[LiveEvent]:
        recv = self._ws.recv
        while True:
            try:
                # decode=False: text frames come as UTF-8 bytes, which orjson reads as is.
                frame = await recv(decode=False)
            except ConnectionClosed as exc:
                if self._closed:
                    return
                raise LiveClosedError(f"Live connection closed: {describe_close(exc)}") from None
            except OSError as exc:
                if self._closed:
                    return
                raise LiveClosedError(f"Live connection lost: {type(exc).__name__}") from None
            try:
                message = _load(frame)
                # Most messages are one audio part: that event, without the full reading.
                audio = audio_only(message)
                events = [audio] if audio is not None else translate_message(message)
            except (_Malformed, TypeError, ValueError, AttributeError):
                # ValueError includes binascii.Error (bad base64 audio).
                if self._closed:
                    return
                await self.close()
                raise LiveClosedError("Live sent a malformed message") from None
            if audio is None and (kinds := unknown_kinds(message)):
                self._kinds.report(kinds)
            for event in events:
                yield event

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await _quiet_close(self._ws)

    async def _send_frame(self, frame: bytes) -> None:
        try:
            await self._send(frame, text=True)
        except ConnectionClosed as exc:
            raise self._send_error(exc) from None

    def _send_error(self, exc: ConnectionClosed) -> LiveClosedError:
        if self._closed:
            return LiveClosedError("Live session already closed")
        return LiveClosedError(f"Live connection closed: {describe_close(exc)}")


def close_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the server sent (1006, "" when none was received)."""
    if exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason[:300]
    return 1006, ""


def describe_close(exc: ConnectionClosed) -> str:
    """`code N: reason` of the close the server sent (1006 when none was received)."""
    if exc.rcvd is not None:
        return f"code {exc.rcvd.code}: {exc.rcvd.reason[:300]}"
    return f"code 1006: {CLOSE_CODE_EXPLANATIONS.get(1006, 'abnormal closure')}"


class _Malformed(Exception):
    """A server frame that is not a JSON object."""


def _load(frame: bytes | str) -> dict[str, Any]:
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise _Malformed from None
    if not isinstance(obj, dict):
        raise _Malformed
    return obj


async def _quiet_close(ws: ClientConnection | None) -> None:
    # Closing a socket the server already dropped may raise again; close() never raises.
    if ws is not None:
        with contextlib.suppress(Exception):
            await ws.close()
