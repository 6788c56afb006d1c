"""The console's routes, mounted under /console only when ADMIN_TOKEN is set.

    GET  /console/login, POST /console/login, POST /console/logout
    GET  /console/  /console/talk  /console/live/{sid}  /console/calls/{sid}   pages
    GET  /console/static/{path}                  ES modules, CSS, worklets (no build step)
    GET  /console/api/calls[/{sid}[/recording]]   the admin API's handlers, same JSON
    GET  /console/api/active                     calls in progress (JSON)
    GET  /console/api/events                     calls starting and ending (SSE)
    GET  /console/api/calls/{sid}/events         one call's live events (SSE)
    POST /console/api/webcall, WS /console/ws/call, WS /console/ws/listen/{sid}

Everything but the login page and its two static files needs the session cookie;
state-changing requests and WebSocket upgrades also need this console's Origin.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from app.admin.calls import CallsApi
from app.console.auth import COOKIE, COOKIE_PATH, SESSION_SECONDS, ConsoleAuth
from app.console.events import ALL_CALLS, EventBus, MemoryBus, Watcher
from app.console.listen import listen_socket
from app.console.watch import TeedRecorders
from app.console.webcall import WebCalls, create_webcall, webcall_socket
from app.recording import is_call_sid
from app.services import Services

STATIC = Path(__file__).parent / "static"
PUBLIC_STATIC = {"console.css", "login.js"}
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_-]+)*\.(js|css|html|svg)$")
_MEDIA = {"js": "text/javascript", "css": "text/css", "html": "text/html", "svg": "image/svg+xml"}
# Pages load only our own files; sockets and fetches go only to this origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
SSE_PING_S = 15
START_WAIT_S = 15.0
MAX_LOGIN_BYTES = 4096

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Console:
    auth: ConsoleAuth
    bus: EventBus
    webcalls: WebCalls
    calls: CallsApi
    routes: list[BaseRoute] = field(default_factory=list)


def mount_console(services: Services) -> Console | None:
    """The console for these services, or None without ADMIN_TOKEN (then it does not exist).

    Every call's recording is teed to the console's bus from here on (`TeedRecorders`).
    """
    settings = services.settings
    token = settings.secret("admin_token")
    if not token:
        return None
    if services.console_bus is None:
        services.console_bus = MemoryBus()
    bus = services.console_bus
    if not isinstance(services.recorder_factory, TeedRecorders):
        services.recorder_factory = TeedRecorders(services.recorder_factory, bus)
    console = Console(
        auth=ConsoleAuth(
            token,
            public_base_url=settings.public_base_url,
            trust_proxy=settings.trust_proxy_headers,
        ),
        bus=bus,
        webcalls=WebCalls(services, token),
        calls=CallsApi(services.call_store, token),
    )
    api = console.calls
    console.routes = [
        Route("/console", _redirect_home, methods=["GET"]),
        Route("/console/login", login_page, methods=["GET"]),
        Route("/console/login", login, methods=["POST"]),
        Route("/console/logout", _guard(logout, write=True), methods=["POST"]),
        Route("/console/", _page("index.html"), methods=["GET"]),
        Route("/console/talk", _page("talk.html"), methods=["GET"]),
        Route("/console/live/{call_sid}", _page("live.html"), methods=["GET"]),
        Route("/console/calls/{call_sid}", _page("call.html"), methods=["GET"]),
        Route("/console/static/{path:path}", static, methods=["GET"]),
        Route("/console/api/calls", _guard(api.list_calls), methods=["GET"]),
        Route("/console/api/active", _guard(active), methods=["GET"]),
        Route("/console/api/events", _guard(all_events), methods=["GET"]),
        Route("/console/api/calls/{call_sid}", _guard(api.get_call), methods=["GET"]),
        Route(
            "/console/api/calls/{call_sid}/recording",
            _guard(api.get_recording),
            methods=["GET"],
        ),
        Route("/console/api/calls/{call_sid}/events", _guard(call_events), methods=["GET"]),
        Route("/console/api/webcall", _guard(create_webcall, write=True), methods=["POST"]),
        WebSocketRoute("/console/ws/call", webcall_socket),
        WebSocketRoute("/console/ws/listen/{call_sid}", listen_socket),
    ]
    return console


# --- access ----------------------------------------------------------------------
def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _guard(handler: Endpoint, *, write: bool = False) -> Endpoint:
    """401 without a session; 403 for a write that does not come from our own pages."""

    async def guarded(request: Request) -> Response:
        auth = _console(request).auth
        if not auth.authenticated(request):
            return _json({"error": "log in first"}, 401)
        if write and not auth.same_origin(request):
            return _json({"error": "cross-site request refused"}, 403)
        return _secure(await handler(request))

    return guarded


def _page(name: str) -> Endpoint:
    async def page(request: Request) -> Response:
        if not _console(request).auth.authenticated(request):
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"/console/login?next={target}", 303)
        return _secure(FileResponse(STATIC / name, media_type="text/html"))

    return page


async def _redirect_home(request: Request) -> Response:
    return RedirectResponse("/console/", 308)


async def login_page(request: Request) -> Response:
    return _secure(FileResponse(STATIC / "login.html", media_type="text/html"))


async def login(request: Request) -> Response:
    auth = _console(request).auth
    if not auth.same_origin(request):
        return _json({"error": "cross-site request refused"}, 403)
    if auth.throttled():
        return _json({"error": "too many failed logins; wait a minute"}, 429)
    body = await request.body()
    if len(body) > MAX_LOGIN_BYTES:
        return _json({"error": "request too large"}, 413)
    # URL-encoded form (what the login page posts); parsed here, no multipart library.
    token = dict(parse_qsl(body.decode("utf-8", "replace"))).get("token", "")
    if not token or not auth.check_token(token.strip()):
        return _json({"error": "wrong token"}, 401)
    response = _json({"ok": True})
    response.set_cookie(
        COOKIE,
        auth.new_session(),
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=auth.secure_cookie(request),
    )
    return _secure(response)


async def logout(request: Request) -> Response:
    response = _json({"ok": True})
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


async def static(request: Request) -> Response:
    name = str(request.path_params["path"])
    if name not in PUBLIC_STATIC and not _console(request).auth.authenticated(request):
        return _json({"error": "log in first"}, 401)
    path = (STATIC / name).resolve()
    if not _STATIC_NAME.match(name) or not path.is_relative_to(STATIC.resolve()):
        return _json({"error": "not found"}, 404)
    if not path.is_file():
        return _json({"error": "not found"}, 404)
    return _secure(FileResponse(path, media_type=_MEDIA[path.suffix[1:]]))


# --- live ------------------------------------------------------------------------
async def active(request: Request) -> Response:
    return _json({"calls": _console(request).bus.active()})


async def all_events(request: Request) -> Response:
    """Calls starting, changing and ending: a snapshot first, then changes."""
    bus = _console(request).bus

    async def stream(watcher: Watcher) -> AsyncIterator[dict[str, Any]]:
        yield _sse({"type": "snapshot", "calls": bus.active()})
        async for event in watcher:
            yield _sse(event)

    return _event_stream(bus, ALL_CALLS, stream)


async def call_events(request: Request) -> Response:
    """One call's events: what happened so far, then as it happens, until it ends.

    A call that has not started yet (a web call's page subscribes while its socket is
    still opening) is waited for, up to START_WAIT_S; a finished one ends the stream.
    """
    console = _console(request)
    bus = console.bus
    call_sid = str(request.path_params["call_sid"])
    if not is_call_sid(call_sid):
        return _json({"error": "invalid call sid"}, 400)

    async def stream(watcher: Watcher) -> AsyncIterator[dict[str, Any]]:
        summary = next((c for c in bus.active() if c.get("call_sid") == call_sid), None)
        replay = summary is not None
        if summary is None and await console.calls.store.get_record(call_sid) is None:
            summary = await _wait_for_start(watcher)
        if summary is None:
            yield _sse({"type": "call.ended", "call_sid": call_sid, "end_reason": None})
            return
        yield _sse({"type": "call.started", "call": summary})
        # Joining mid-call: the events so far (later ones are already in the queue).
        for event in bus.recent(call_sid) if replay else ():
            yield _sse(event)
        async for event in watcher:
            yield _sse(event)
            if event.get("type") == "call.ended":
                return

    return _event_stream(bus, call_sid, stream)


async def _wait_for_start(watcher: Watcher) -> dict[str, Any] | None:
    try:
        async with asyncio.timeout(START_WAIT_S):
            while True:
                event = await watcher.get()
                if event.get("type") == "call.started":
                    call: dict[str, Any] = event["call"]
                    return call
    except TimeoutError:
        return None


def _event_stream(
    bus: EventBus, channel: str, stream: Callable[[Watcher], AsyncIterator[dict[str, Any]]]
) -> Response:
    async def events() -> AsyncIterator[dict[str, Any]]:
        # `stream` takes its snapshot before its first `yield`, with no await between the
        # subscription and the snapshot: nothing in between is missed or seen twice.
        with bus.subscribe(channel) as watcher:
            async for item in stream(watcher):
                yield item

    return EventSourceResponse(events(), ping=SSE_PING_S, headers={"Cache-Control": "no-store"})


def _sse(event: dict[str, Any]) -> dict[str, Any]:
    return {"event": str(event.get("type", "message")), "data": orjson.dumps(event).decode()}


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _json(document: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(document), status, media_type="application/json")
