"""Admin API over finished calls: records and recordings, behind a bearer token.

    GET /calls                       call records, newest first: `?limit=` (default 50),
                                     `?offset=` (paging), `?q=` (text in sid, numbers, end
                                     reason, direction, agent), `?summary=1` (one line each)
    GET /calls/{call_sid}            one call record (JSON)
    GET /calls/{call_sid}/recording  the stereo WAV (`?format=mp3` for the MP3 copy)

Without a configured admin token every route answers 404, as if it did not exist: an
unprotected recordings endpoint is worse than none. Calls come from a `CallStore`: the
local RECORDINGS_DIR, or object storage (RECORDINGS_URL) so that any instance answers for
any call; a store that does not answer gives 503 with a reason.
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from app.errors import CallStoreError
from app.recording import is_call_sid
from app.recording.record import Json
from app.recording.store import CallStore, RemoteAudio

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

Handler = Callable[[Request], Awaitable[Response]]
log = structlog.get_logger("app.admin")


def calls_routes(store: CallStore, admin_token: str | None) -> list[Route]:
    """The admin routes; `admin_token` None or empty disables them (404)."""
    api = CallsApi(store, admin_token or None)
    return [
        Route("/calls", api.guard(api.list_calls), methods=["GET"]),
        Route("/calls/{call_sid}", api.guard(api.get_call), methods=["GET"]),
        Route("/calls/{call_sid}/recording", api.guard(api.get_recording), methods=["GET"]),
    ]


def _store_errors(
    handler: Callable[[CallsApi, Request], Awaitable[Response]],
) -> Callable[[CallsApi, Request], Awaitable[Response]]:
    """Object storage down: 503 with a reason (no URL, no credential), nothing lost."""

    @functools.wraps(handler)
    async def run(api: CallsApi, request: Request) -> Response:
        try:
            return await handler(api, request)
        except CallStoreError as exc:
            return _error(503, str(exc))

    return run


class CallsApi:
    def __init__(self, store: CallStore, admin_token: str | None) -> None:
        self.store = store
        self._token = admin_token.encode() if admin_token else None

    def guard(self, handler: Handler) -> Handler:
        """Disabled without a token; 401 unless the request carries the right one."""

        async def guarded(request: Request) -> Response:
            if self._token is None:
                return _error(404, "not found")
            presented = _bearer(request)
            if presented is None:
                return _unauthorized('Bearer realm="voicebot"')
            # Constant time: the comparison must not tell how much of a guess was right.
            if not hmac.compare_digest(presented.encode(), self._token):
                return _unauthorized('Bearer realm="voicebot", error="invalid_token"')
            return await handler(request)

        return guarded

    @_store_errors
    async def list_calls(self, request: Request) -> Response:
        params = request.query_params
        limit = _limit(params.get("limit"))
        if limit is None:
            return _error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
        offset = params.get("offset", "0")
        if not offset.isdigit():
            return _error(400, "offset must be a non-negative integer")
        query = params.get("q", "").strip().lower()[:100]
        summary = params.get("summary") in ("1", "true")
        calls: list[Json] = []
        skip = int(offset)
        more = False
        async for record in self.store.records():
            if query and query not in _search_text(record):
                continue
            if skip:
                skip -= 1
                continue
            if len(calls) == limit:
                more = True
                break
            calls.append(summarize(record) if summary else record)
        body: Json = {"calls": calls, "count": len(calls), "offset": int(offset), "more": more}
        return _json(body)

    @_store_errors
    async def get_call(self, request: Request) -> Response:
        call_sid = str(request.path_params["call_sid"])
        if not is_call_sid(call_sid):
            return _error(400, "invalid call sid")
        record = await self.store.get_record(call_sid)
        return _json(record) if record is not None else _error(404, "no such call")

    @_store_errors
    async def get_recording(self, request: Request) -> Response:
        fmt = request.query_params.get("format", "wav")
        if fmt not in _MEDIA_TYPES:
            return _error(400, "format must be wav or mp3")
        call_sid = str(request.path_params["call_sid"])
        if not is_call_sid(call_sid):
            return _error(400, "invalid call sid")
        # Only finished (or repaired) calls: a WAV still being written grows under us.
        audio = await self.store.audio(call_sid, f".{fmt}")
        if audio is None:
            return _error(404, "no such recording")
        if isinstance(audio, Path):
            return FileResponse(
                audio,
                media_type=_MEDIA_TYPES[fmt],
                filename=audio.name,
                content_disposition_type="inline",
            )
        return await _remote_response(audio, _MEDIA_TYPES[fmt], request.headers.get("range"))


async def _remote_response(
    audio: RemoteAudio, media_type: str, range_header: str | None
) -> Response:
    """A stored recording, whole or one byte range (players seek with Range requests)."""
    headers = {
        "accept-ranges": "bytes",
        "content-disposition": f'inline; filename="{audio.name}"',
    }
    span = _byte_range(range_header, audio.size) if range_header else None
    if span == "unsatisfiable":
        return Response(status_code=416, headers={"content-range": f"bytes */{audio.size}"})
    if isinstance(span, tuple):
        start, end = span
        body = await audio.read_range(start, end)
        headers["content-range"] = f"bytes {start}-{end - 1}/{audio.size}"
        return Response(body, status_code=206, media_type=media_type, headers=headers)
    headers["content-length"] = str(audio.size)
    return StreamingResponse(_logged(audio), media_type=media_type, headers=headers)


async def _logged(audio: RemoteAudio) -> AsyncIterator[bytes]:
    try:
        async for chunk in audio.stream():
            yield chunk
    except Exception as exc:  # mid-body: the status is sent, so log and cut the response
        log.error("admin.recording_stream_failed", file=audio.name, error=str(exc)[:300])
        raise


def _byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """One `bytes=a-b` range as [start, end); "unsatisfiable"; None to send it all."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: the whole object (allowed by RFC 9110)
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        return "unsatisfiable"
    return start, end


def summarize(record: Json) -> Json:
    """One history line: who, when, how long, how it ended, and what happened."""
    usage = record.get("usage")
    # The bridge records Live's usage as `total_tokens` (app/live/events.py `Usage`).
    tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
    meta = record.get("meta")
    agent = meta.get("agent") if isinstance(meta, dict) else None
    return {
        "call_sid": record.get("call_sid"),
        "direction": record.get("direction", "inbound"),
        "agent": record.get("agent", agent),
        "from": record.get("from"),
        "to": record.get("to"),
        "started_at": record.get("started_at"),
        "duration_s": record.get("duration_s"),
        "end_reason": record.get("end_reason"),
        "turns": _count(record, "transcript"),
        "tool_calls": _count(record, "tool_calls"),
        "interruptions": _count(record, "interruptions"),
        "reconnects": _count(record, "reconnects"),
        "tokens": tokens,
    }


def _count(record: Json, key: str) -> int:
    value = record.get(key)
    return len(value) if isinstance(value, list) else 0


def _search_text(record: Json) -> str:
    fields = ("call_sid", "from", "to", "end_reason", "direction", "agent")
    return " ".join(str(record.get(key) or "") for key in fields).lower()


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _limit(raw: str | None) -> int | None:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= MAX_LIMIT else None


def _json(document: Json) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status, media_type="application/json")


def _unauthorized(challenge: str) -> Response:
    response = _error(401, "unauthorized")
    response.headers["WWW-Authenticate"] = challenge
    return response
