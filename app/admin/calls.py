"""Admin API over finished calls: records and recordings, behind a bearer token.

    GET /calls                       call records, newest first: `?limit=` (default 50),
                                     `?offset=` (paging), `?q=` (text in sid, numbers, end
                                     reason, direction, agent), `?summary=1` (one line each)
    GET /calls/{call_sid}            one call record (JSON)
    GET /calls/{call_sid}/recording  the stereo WAV (`?format=mp3` for the MP3 copy)

Without a configured admin token every route answers 404, as if it did not exist: an
unprotected recordings endpoint is worse than none. Handlers are plain functions, so
Starlette runs their file reads in its thread pool, off the event loop.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from app.recording import call_file, is_call_sid
from app.recording.record import Json, read_json

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}

Handler = Callable[[Request], Response]


def calls_routes(recordings_dir: Path, admin_token: str | None) -> list[Route]:
    """The admin routes; `admin_token` None or empty disables them (404)."""
    api = CallsApi(recordings_dir, admin_token or None)
    return [
        Route("/calls", api.guard(api.list_calls), methods=["GET"]),
        Route("/calls/{call_sid}", api.guard(api.get_call), methods=["GET"]),
        Route("/calls/{call_sid}/recording", api.guard(api.get_recording), methods=["GET"]),
    ]


class CallsApi:
    def __init__(self, directory: Path, admin_token: str | None) -> None:
        self.directory = directory
        self._dir = directory
        self._token = admin_token.encode() if admin_token else None

    def guard(self, handler: Handler) -> Handler:
        """Disabled without a token; 401 unless the request carries the right one."""

        def guarded(request: Request) -> Response:
            if self._token is None:
                return _error(404, "not found")
            presented = _bearer(request)
            if presented is None:
                return _unauthorized('Bearer realm="voicebot"')
            # Constant time: the comparison must not tell how much of a guess was right.
            if not hmac.compare_digest(presented.encode(), self._token):
                return _unauthorized('Bearer realm="voicebot", error="invalid_token"')
            return handler(request)

        return guarded

    def list_calls(self, request: Request) -> Response:
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
        for path in self._records_newest_first():
            record = read_json(path)  # unreadable records are skipped, not counted
            if record is None or (query and query not in _search_text(record)):
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

    def get_call(self, request: Request) -> Response:
        record_path = self._call_file(request, ".json")
        if isinstance(record_path, Response):
            return record_path
        record = read_json(record_path)
        return _json(record) if record is not None else _error(404, "no such call")

    def get_recording(self, request: Request) -> Response:
        fmt = request.query_params.get("format", "wav")
        if fmt not in _MEDIA_TYPES:
            return _error(400, "format must be wav or mp3")
        # Only finished (or repaired) calls: a WAV still being written grows under us.
        record_path = self._call_file(request, ".json")
        if isinstance(record_path, Response):
            return record_path
        audio = record_path.with_suffix(f".{fmt}")
        if not record_path.is_file() or not audio.is_file():
            return _error(404, "no such recording")
        return FileResponse(
            audio,
            media_type=_MEDIA_TYPES[fmt],
            filename=audio.name,
            content_disposition_type="inline",
        )

    def _call_file(self, request: Request, suffix: str) -> Path | Response:
        """The call's file, or the error response: a bad sid, or a path outside the dir."""
        call_sid = str(request.path_params["call_sid"])
        if not is_call_sid(call_sid):
            return _error(400, "invalid call sid")
        root = self._dir.resolve()
        path = call_file(root, call_sid, suffix).resolve()
        # The sid pattern already rules out dots and slashes; this is the belt to its braces.
        if path.parent != root:
            return _error(400, "invalid call sid")
        return path

    def _records_newest_first(self) -> list[Path]:
        """Records by write time (when the call ended), newest first."""
        if not self._dir.is_dir():
            return []
        dated: list[tuple[float, Path]] = []
        for path in self._dir.glob("CA*.json"):
            if is_call_sid(path.stem):
                try:
                    dated.append((path.stat().st_mtime, path))
                except OSError:
                    continue  # pruned between the listing and the stat
        dated.sort(reverse=True)
        return [path for _, path in dated]


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
