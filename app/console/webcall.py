"""Web calls: a browser talks to the agent through the same path as a phone call.

    POST /console/api/webcall   -> {call_sid, stream_sid, account_sid, parameters, socket}
    WS   /console/ws/call         the page speaks Twilio's Media Streams protocol

The POST plays the part of Twilio's voice webhook: it names the call, pre-warms its Live
session and issues a single-use token that must come back in `start.customParameters`
(as the webhook's TwiML `<Parameter>`s do). The socket then runs exactly the phone
path (`app.twilio.media`: frame reader, bad-frame flood close, bridge, tools, recorder),
with direction "web" in the record. A web call has no Twilio call behind it: hanging up
closes the socket, and a transfer ends the call as "transferred" without dialling.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Any

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from app.agents.session import AGENT_PARAM, DIRECTION_PARAM, RESERVED_PARAMS
from app.console.auth import ConsoleAuth
from app.errors import SignatureError
from app.services import Services
from app.twilio.media import POLICY_VIOLATION, FrameReader, StreamSink, bridge_stream, read_start
from app.twilio.stream_tokens import (
    CALL_SID_PARAM,
    TOKEN_PARAM,
    MemoryUsedTokens,
    RedisUsedTokens,
    StreamTokens,
)
from app.twilio.webhooks import agent_call

log = structlog.get_logger()

# What the voice webhook passes through (app.twilio.webhooks.agent_call).
MAX_PARAMETERS = 8
MAX_VALUE_CHARS = 256
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
WEB_ACCOUNT_SID = "ACwebconsole"
WEB = "web"  # the call's direction, in its record and its token-covered parameters


class WebCalls:
    """Issues web calls and checks the stream that claims one."""

    def __init__(self, services: Services, admin_token: str) -> None:
        used = RedisUsedTokens(services.redis) if services.redis is not None else MemoryUsedTokens()
        # Its own key: a phone call's stream token never opens a web call, nor the reverse.
        key = b"web-call\0" + admin_token.encode()
        self._tokens = StreamTokens(key, services.settings.stream_token_ttl, used)
        self._services = services

    def create(self, request: WebCallRequest) -> dict[str, Any]:
        """What the voice webhook does for a phone call: choose the agent, pre-warm its
        session, and issue the stream's parameters with a token covering them."""
        call_sid = "CA" + secrets.token_hex(16)
        form = {"From": request.caller, "To": request.called, "Direction": WEB}
        query = dict(request.custom)
        if request.agent:
            query[AGENT_PARAM] = request.agent
        parameters, connector = agent_call(self._services, call_sid, form, query)
        parameters[TOKEN_PARAM] = self._tokens.issue(call_sid, covers=parameters)
        self._services.prewarm.start(call_sid, connector.open)
        return {
            "call_sid": call_sid,
            "stream_sid": "MZ" + secrets.token_hex(16),
            "account_sid": WEB_ACCOUNT_SID,
            "agent": connector.agent.name,
            "parameters": parameters,
            "socket": "/console/ws/call",
        }

    async def redeem(self, call_sid: str, parameters: dict[str, str]) -> None:
        if parameters.get(CALL_SID_PARAM) != call_sid or parameters.get(DIRECTION_PARAM) != WEB:
            raise SignatureError("stream parameters do not belong to this call")
        covered = {k: v for k, v in parameters.items() if k != TOKEN_PARAM}
        await self._tokens.redeem(call_sid, parameters.get(TOKEN_PARAM), covers=covered)


@dataclasses.dataclass(frozen=True)
class WebCallRequest:
    caller: str
    called: str
    custom: dict[str, str]
    agent: str | None = None


def parse_request(body: bytes) -> WebCallRequest | str:
    """The call the page asks for, or what is wrong with it. Limits are the webhook's:
    the voice webhook passes at most 8 extra parameters, names <= 64, values <= 256."""
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return "body must be JSON"
    if not isinstance(data, dict):
        return "body must be a JSON object"
    caller, called, agent = data.get("from", ""), data.get("to", ""), data.get("agent")
    if not isinstance(caller, str) or not isinstance(called, str):
        return "from and to must be strings"
    if len(caller) > 64 or len(called) > 64:
        return "from and to are at most 64 characters"
    if agent is not None and (not isinstance(agent, str) or not _NAME.match(agent)):
        return "agent must be an agent's name"
    raw = data.get("parameters") or {}
    if not isinstance(raw, dict) or len(raw) > MAX_PARAMETERS:
        return f"parameters must be an object of at most {MAX_PARAMETERS} names"
    custom: dict[str, str] = {}
    for name, value in raw.items():
        if not _NAME.match(str(name)) or name in RESERVED_PARAMS:
            return f"parameter name not allowed: {str(name)[:64]!r}"
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            return f"parameter {name!r}: a string of at most {MAX_VALUE_CHARS} characters"
        custom[name] = value
    return WebCallRequest(caller.strip(), called.strip(), custom, agent or None)


async def create_webcall(request: Request) -> Response:
    services: Services = request.app.state.services
    console = request.app.state.console
    if services.draining:
        return _json({"error": "the server is shutting down"}, 503)
    parsed = parse_request(await request.body())
    if isinstance(parsed, str):
        return _json({"error": parsed}, 400)
    call = console.webcalls.create(parsed)
    log.info(
        "webcall.created", call_sid=call["call_sid"], caller=parsed.caller, agent=call["agent"]
    )
    return _json(call, 201)


async def webcall_socket(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    console = ws.app.state.console
    auth: ConsoleAuth = console.auth
    if not (auth.authenticated(ws) and auth.same_origin(ws)):
        # Refused before the handshake completes (HTTP 403): a cross-site page, or no session.
        log.warning("webcall.refused", origin=ws.headers.get("origin", "")[:200])
        await ws.close(POLICY_VIOLATION)
        return
    await ws.accept()
    reader = FrameReader(ws, services, log)
    start = await read_start(ws, reader)
    if start is None:
        return
    bound = log.bind(call_sid=start.call_sid, stream_sid=start.stream_sid)
    try:
        await console.webcalls.redeem(start.call_sid, dict(start.custom_parameters))
    except SignatureError as exc:
        bound.warning("webcall.bad_token", error=str(exc))
        await StreamSink(ws).close(POLICY_VIOLATION, str(exc))
        return
    # The phone path from here on (direction "web" comes with the covered parameters).
    await bridge_stream(services, ws, reader, start, bound)


def _json(document: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(document), status, media_type="application/json")
