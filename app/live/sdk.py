"""The Gemini Live adapter: the only module that imports `google.genai`.

It opens sessions with the configured model, voice, prompt, tools, transcription,
session resumption and context window compression, and translates every server
message into the bridge's own events (`app.live.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog
from google import genai
from google.auth import exceptions as google_auth_errors
from google.genai import errors as genai_errors
from google.genai import types
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from app.errors import LiveClosedError, LiveSetupError
from app.live.events import (
    AgentAudio,
    AgentTranscript,
    CallerTranscript,
    GenerationComplete,
    GoAway,
    Interrupted,
    LiveEvent,
    ResumptionUpdate,
    SessionInfo,
    ToolCall,
    ToolCallCancellation,
    ToolResponse,
    TurnComplete,
    Usage,
)
from app.live.frame_watch import WATCH, FrameWatch, WatchedConnection

# Shared with the direct client; re-exported so `from app.live.sdk import ...` works.
from app.live.options import INPUT_MIME as INPUT_MIME
from app.live.options import KindReporter, instructions_with, is_audio_mime, rate_of
from app.live.options import LiveOptions as LiveOptions
from app.live.options import parse_duration as parse_duration

log = structlog.get_logger()


def translate(message: types.LiveServerMessage) -> list[LiveEvent]:
    """Every event one server message carries, in wire order.

    Newer models bundle audio, transcripts and turnComplete in one message, so each
    field is looked at on its own (never an elif chain).
    """
    events: list[LiveEvent] = []
    content = message.server_content
    if content is not None:
        if content.input_transcription and content.input_transcription.text:
            events.append(CallerTranscript(content.input_transcription.text))
        if content.model_turn and content.model_turn.parts:
            for part in content.model_turn.parts:
                blob = part.inline_data
                if blob is not None and blob.data and is_audio_mime(blob.mime_type):
                    events.append(AgentAudio(blob.data, rate_of(blob.mime_type)))
        if content.output_transcription and content.output_transcription.text:
            events.append(AgentTranscript(content.output_transcription.text))
        if content.interrupted:
            events.append(Interrupted())
        if content.generation_complete:
            events.append(GenerationComplete())
        if content.turn_complete:
            in_progress = content.interaction_status == types.InteractionStatus.IN_PROGRESS
            events.append(TurnComplete(in_progress=in_progress))
    if message.tool_call and message.tool_call.function_calls:
        for call in message.tool_call.function_calls:
            events.append(ToolCall(call.id or "", call.name or "", dict(call.args or {})))
    cancellation = message.tool_call_cancellation
    if cancellation and cancellation.ids:
        events.append(ToolCallCancellation(tuple(cancellation.ids)))
    update = message.session_resumption_update
    if update is not None:
        events.append(ResumptionUpdate(update.new_handle, bool(update.resumable)))
    if message.go_away is not None:
        events.append(GoAway(parse_duration(message.go_away.time_left)))
    usage = message.usage_metadata
    if usage is not None:
        events.append(
            Usage(
                usage.prompt_token_count or 0,
                usage.response_token_count or 0,  # Vertex's candidates count, converted
                usage.total_token_count or 0,
                usage.thoughts_token_count or 0,
                usage.tool_use_prompt_token_count or 0,
                usage.cached_content_token_count or 0,
                _by_modality(usage.prompt_tokens_details),
                _by_modality(usage.response_tokens_details),
            )
        )
    # voice_activity(_detection_signal): known and deliberately ignored (options.IGNORED_KINDS).
    return events


def _by_modality(details: Sequence[types.ModalityTokenCount] | None) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in details or ():
        modality = item.modality.value if item.modality else "MODALITY_UNSPECIFIED"
        totals[modality] = totals.get(modality, 0) + (item.token_count or 0)
    return totals


class GeminiConnector:
    """Opens `GeminiSession`s; one client is shared by all calls of the process."""

    def __init__(self, options: LiveOptions) -> None:
        self._options = options
        # The SDK passes `async_client_args` keys that `websockets.connect` knows on to
        # it: that is how we trust a private CA and choose keepalive on purpose (the
        # default 20 s ping timeout has been reported to kill long Live sessions).
        ws_args: dict[str, Any] = {
            "ping_interval": options.ping_interval,
            "ping_timeout": options.ping_timeout,
            # No permessage-deflate: zlib on every 20 ms audio message (base64 PCM,
            # which barely compresses) was ~10% of the server's CPU in `voicebot bench`.
            "compression": None,
            "create_connection": WatchedConnection,
        }
        if options.ssl_context is not None:
            ws_args["ssl"] = options.ssl_context
        http_options = types.HttpOptions(
            api_version=options.api_version,
            base_url=options.base_url,
            headers=dict(options.extra_headers) or None,
            async_client_args=ws_args,
        )
        vertex = options.vertex
        if vertex is not None:
            # Project + location + credentials: the SDK builds the regional (or base_url)
            # LlmBidiService URL, the projects/... model path and the Bearer header, and
            # refreshes the credentials (in a thread) when they have expired.
            self._client = genai.Client(
                vertexai=True,
                project=vertex.project,
                location=vertex.location,
                credentials=vertex.credentials,
                http_options=http_options,
            )
        else:
            self._client = genai.Client(api_key=options.api_key, http_options=http_options)
        self._vertexai = vertex is not None

    def config(
        self,
        resume_handle: str | None,
        options: LiveOptions | None = None,
        history: str | None = None,
    ) -> types.LiveConnectConfig:
        """Everything a session is opened with, in one place (the direct client's
        `setup_message` must send the same). `options`: this call's session fields."""
        opts = options or self._options
        tools: list[Any] | None = None
        if opts.tool_declarations:
            declarations = [types.FunctionDeclaration(**d) for d in opts.tool_declarations]
            tools = [types.Tool(function_declarations=declarations)]
        vad = opts.activity_detection
        return types.LiveConnectConfig(
            response_modalities=[types.Modality.AUDIO],
            speech_config=types.SpeechConfig(
                voice_config=types.VoiceConfig(
                    prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=opts.voice)
                ),
                language_code=opts.language,
            ),
            system_instruction=instructions_with(opts.instructions, history),
            tools=tools,
            input_audio_transcription=types.AudioTranscriptionConfig(),
            output_audio_transcription=types.AudioTranscriptionConfig(),
            session_resumption=types.SessionResumptionConfig(handle=resume_handle),
            context_window_compression=types.ContextWindowCompressionConfig(
                trigger_tokens=opts.compression_trigger_tokens,
                sliding_window=types.SlidingWindow(target_tokens=opts.compression_target_tokens),
            ),
            realtime_input_config=(
                None
                if vad is None
                else types.RealtimeInputConfig(
                    automatic_activity_detection=types.AutomaticActivityDetection(**vad.fields())
                )
            ),
            enable_affective_dialog=opts.affective_dialog,
            proactivity=(
                None
                if opts.proactive_audio is None
                else types.ProactivityConfig(proactive_audio=opts.proactive_audio)
            ),
            thinking_config=(
                None
                if opts.thinking_budget is None
                else types.ThinkingConfig(thinking_budget=opts.thinking_budget)
            ),
        )

    async def connect(
        self,
        *,
        resume_handle: str | None = None,
        options: LiveOptions | None = None,
        history: str | None = None,
    ) -> GeminiSession:
        """`options`: this call's session fields (the connection stays the connector's)."""
        stack = contextlib.AsyncExitStack()
        started = time.perf_counter()
        opts = options or self._options
        manager = self._client.aio.live.connect(
            model=opts.model, config=self.config(resume_handle, opts, history)
        )
        watch = FrameWatch(KindReporter(self._options.observer))
        token = WATCH.set(watch)
        try:
            async with asyncio.timeout(self._options.connect_timeout):
                session = await stack.enter_async_context(manager)
        except TimeoutError:
            await _quiet_close(stack)
            raise LiveSetupError(
                f"Live setup timed out after {self._options.connect_timeout:.0f} s"
            ) from None
        except genai_errors.APIError as exc:
            await _quiet_close(stack)
            code = exc.code if isinstance(exc.code, int) else None
            raise LiveSetupError(
                f"Live refused setup: {self._scrub(describe_api_error(exc))}",
                code=code,
                reason=self._scrub(api_error_reason(exc)),
            ) from None
        except (OSError, ssl.SSLError, InvalidHandshake) as exc:
            await _quiet_close(stack)
            cause = self._scrub(f"{type(exc).__name__}: {exc}")
            raise LiveSetupError(f"Live unreachable: {cause}") from None
        except (ValueError, TypeError):
            # A first frame that is not JSON, or not an object the SDK can read.
            await _quiet_close(stack)
            raise LiveSetupError("Live setup failed: the server sent a malformed message") from None
        except google_auth_errors.GoogleAuthError as exc:
            await _quiet_close(stack)
            raise LiveSetupError(
                f"Vertex AI credentials could not be refreshed: {type(exc).__name__}"
            ) from None
        finally:
            WATCH.reset(token)
        if session.setup_complete is None:
            await _quiet_close(stack)
            got = ", ".join(watch.last_keys) or "nothing"
            raise LiveSetupError(f"Live setup failed: expected setupComplete, got {got}")
        info = SessionInfo(
            session_id=session.session_id,
            setup_seconds=time.perf_counter() - started,
            resumed_from=resume_handle,
        )
        return GeminiSession(session, stack, info, watch, vertexai=self._vertexai)

    def _scrub(self, text: str) -> str:
        # Error texts come from the server and libraries: never let the key through.
        key = self._options.api_key.strip()
        return text.replace(key, "***") if len(key) >= 8 else text


class GeminiSession:
    """One open Live connection, seen through the `LiveSession` interface."""

    def __init__(
        self,
        session: Any,
        stack: contextlib.AsyncExitStack,
        info: SessionInfo,
        watch: FrameWatch | None = None,
        *,
        vertexai: bool = False,
    ) -> None:
        self._session = session
        self._stack = stack
        self.info = info
        self._closed = False
        self._watch = watch
        self._vertexai = vertexai

    async def send_audio(self, pcm16k: bytes) -> None:
        # A plain dict (`BlobOrDict`): the SDK validates it into the same `Blob`, and
        # skipping our own `types.Blob(...)` saves a pydantic pass per 20 ms frame.
        await self._guard(
            self._session.send_realtime_input(audio={"data": pcm16k, "mime_type": INPUT_MIME})
        )

    async def send_audio_stream_end(self) -> None:
        await self._guard(self._session.send_realtime_input(audio_stream_end=True))

    async def send_text(self, text: str) -> None:
        await self._guard(self._session.send_realtime_input(text=text))

    async def send_activity_start(self) -> None:
        await self._guard(self._session.send_realtime_input(activity_start=types.ActivityStart()))

    async def send_activity_end(self) -> None:
        await self._guard(self._session.send_realtime_input(activity_end=types.ActivityEnd()))

    async def send_tool_responses(self, responses: list[ToolResponse]) -> None:
        if not self._vertexai and any(not r.call_id for r in responses):
            # google-genai refuses an id-less function response on the Gemini API (which
            # always sends ids; id-less calls are Vertex's). The direct client sends it.
            log.error("live.tool_response_without_id", tools=[r.name for r in responses])
            responses = [r for r in responses if r.call_id]
            if not responses:
                return
        function_responses = [
            types.FunctionResponse(
                id=r.call_id or None,  # no id: answered by name
                name=r.name,
                response=dict(r.response),
                scheduling=types.FunctionResponseScheduling(r.scheduling) if r.scheduling else None,
                will_continue=r.will_continue,
            )
            for r in responses
        ]
        await self._guard(self._session.send_tool_response(function_responses=function_responses))

    async def events(self) -> AsyncIterator[LiveEvent]:
        # `session.receive()` ends after each turnComplete, so loop around it; any
        # close, even code 1000, surfaces as APIError.
        try:
            while not self._closed:
                try:
                    async for message in self._session.receive():
                        for event in translate(message):
                            yield event
                except (ValueError, TypeError, AttributeError, KeyError):
                    if self._watch is not None and self._watch.unknown_only:
                        continue  # reported by the watch; the connection is fine
                    if self._closed:
                        return
                    await self.close()
                    raise LiveClosedError("Live sent a malformed message") from None
        except genai_errors.APIError as exc:
            if not self._closed:
                raise LiveClosedError(
                    f"Live connection closed: {describe_api_error(exc)}"
                ) from None
        except (OSError, ssl.SSLError) as exc:
            if not self._closed:
                raise LiveClosedError(f"Live connection lost: {type(exc).__name__}") from None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await _quiet_close(self._stack)

    async def _guard(self, send: Any) -> None:
        try:
            await send
        except genai_errors.APIError as exc:
            raise LiveClosedError(f"Live send failed: {describe_api_error(exc)}") from None
        except ConnectionClosed as exc:
            # The SDK lets websockets' own error through on a send to a closed socket.
            raise LiveClosedError(f"Live connection closed: {exc}") from None


def api_error_reason(exc: genai_errors.APIError) -> str:
    """The close reason: for a WebSocket close the SDK keeps it in `details` (a str)."""
    if exc.message:
        return str(exc.message)[:300]
    return (exc.details if isinstance(exc.details, str) else str(exc))[:300]


def describe_api_error(exc: genai_errors.APIError) -> str:
    """`code N: reason`, as the direct client says it."""
    return f"code {exc.code}: {api_error_reason(exc)}"


async def _quiet_close(stack: contextlib.AsyncExitStack) -> None:
    # Closing a socket the server already dropped raises the same error again.
    with contextlib.suppress(Exception):
        await stack.aclose()
