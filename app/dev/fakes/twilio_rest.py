"""A fake of the slice of Twilio's 2010-04-01 REST API that `app.twilio.rest` uses.

It speaks the real wire format (form-encoded requests, HTTP Basic auth, Twilio's JSON
bodies and error JSON) so the real twilio library parses its answers; tests and the demo
point `TwilioRestClient(base_url=...)` at it. Every request is recorded for assertions.

    POST /2010-04-01/Accounts/{AccountSid}/Calls.json              create a call
    GET  /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json    fetch a call
    POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json    Status=completed / Twiml / Url
    GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json?PhoneNumber=
    POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API = "/2010-04-01/Accounts/{account_sid}"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"


@dataclass
class RecordedRequest:
    """One request as the fake saw it (never the password)."""

    method: str
    path: str
    params: dict[str, str]
    username: str | None
    authorized: bool
    status_code: int = 0


@dataclass
class FakeCall:
    sid: str
    to: str
    from_: str
    status: str = "in-progress"
    url: str | None = None
    twiml: str | None = None
    status_callback: str | None = None
    updates: list[dict[str, str]] = field(default_factory=list)


@dataclass
class FakeNumber:
    sid: str
    phone_number: str
    voice_url: str | None = None
    voice_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"


@dataclass
class FakeTwilioState:
    """Everything the fake knows; tests read and seed it directly."""

    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    requests: list[RecordedRequest] = field(default_factory=list)
    calls: dict[str, FakeCall] = field(default_factory=dict)
    numbers: dict[str, FakeNumber] = field(default_factory=dict)
    # Seconds every answer is held back: lets tests exercise client timeouts.
    delay: float = 0.0

    def reset(self) -> None:
        """Forget every request, call and number (credentials stay)."""
        self.requests.clear()
        self.calls.clear()
        self.numbers.clear()
        self.delay = 0.0

    def add_call(
        self,
        sid: str | None = None,
        *,
        to: str = "+15550100001",
        from_: str = "+15550100002",
        status: str = "in-progress",
    ) -> FakeCall:
        call = FakeCall(sid=sid or _new_sid("CA"), to=to, from_=from_, status=status)
        self.calls[call.sid] = call
        return call

    def add_number(self, phone_number: str, sid: str | None = None) -> FakeNumber:
        number = FakeNumber(sid=sid or _new_sid("PN"), phone_number=phone_number)
        self.numbers[number.sid] = number
        return number

    def requests_matching(self, method: str, path_suffix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]


def _new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _now() -> str:
    # Twilio's 2010 API dates are RFC 2822, which the twilio library parses.
    return format_datetime(datetime.now(UTC), usegmt=True)


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's legacy error body, which the twilio library turns into TwilioRestException."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


def _call_json(state: FakeTwilioState, call: FakeCall) -> dict[str, Any]:
    return {
        "sid": call.sid,
        "account_sid": state.account_sid,
        "to": call.to,
        "from": call.from_,
        "status": call.status,
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": _now(),
        "date_updated": _now(),
        "uri": f"/2010-04-01/Accounts/{state.account_sid}/Calls/{call.sid}.json",
    }


def _number_json(state: FakeTwilioState, number: FakeNumber) -> dict[str, Any]:
    return {
        "sid": number.sid,
        "account_sid": state.account_sid,
        "phone_number": number.phone_number,
        "friendly_name": number.phone_number,
        "voice_url": number.voice_url,
        "voice_method": number.voice_method,
        "status_callback": number.status_callback,
        "status_callback_method": number.status_callback_method,
        "capabilities": {"voice": True, "sms": True, "mms": False, "fax": False},
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{state.account_sid}/IncomingPhoneNumbers/{number.sid}.json",
    }


def _basic_user(request: Request) -> tuple[str | None, str | None]:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user, password


class _Api:
    """The route handlers, closed over one state object."""

    def __init__(self, state: FakeTwilioState) -> None:
        self.state = state

    async def _admit(self, request: Request) -> tuple[RecordedRequest, Response | None]:
        """Record the request; return an error response if it must be refused."""
        params = dict(request.query_params)
        if request.method == "POST":
            # Parsed by hand: Starlette's form() needs python-multipart, and Twilio's
            # client only ever sends application/x-www-form-urlencoded.
            params.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        user, password = _basic_user(request)
        ok = user == self.state.account_sid and password == self.state.auth_token
        record = RecordedRequest(request.method, request.url.path, params, user, ok)
        self.state.requests.append(record)
        if self.state.delay:
            await asyncio.sleep(self.state.delay)
        if not ok:
            return record, twilio_error(401, 20003, "Authenticate")
        if request.path_params.get("account_sid") != self.state.account_sid:
            return record, self._not_found(request)
        return record, None

    def _not_found(self, request: Request) -> JSONResponse:
        return twilio_error(404, 20404, f"The requested resource {request.url.path} was not found")

    def _done(self, record: RecordedRequest, response: Response) -> Response:
        record.status_code = response.status_code
        return response

    async def create_call(self, request: Request) -> Response:
        record, refused = await self._admit(request)
        if refused is not None:
            return self._done(record, refused)
        p = record.params
        if not p.get("To"):
            return self._done(record, twilio_error(400, 21201, "No 'To' number is specified"))
        if not p.get("From"):
            return self._done(record, twilio_error(400, 21213, "No 'From' number is specified"))
        if not (p.get("Url") or p.get("Twiml") or p.get("ApplicationSid")):
            return self._done(record, twilio_error(400, 21205, "Url parameter is required."))
        call = self.state.add_call(to=p["To"], from_=p["From"], status="queued")
        call.url, call.twiml = p.get("Url"), p.get("Twiml")
        call.status_callback = p.get("StatusCallback")
        return self._done(record, JSONResponse(_call_json(self.state, call), status_code=201))

    async def call(self, request: Request) -> Response:
        record, refused = await self._admit(request)
        if refused is not None:
            return self._done(record, refused)
        call = self.state.calls.get(request.path_params["call_sid"])
        if call is None:
            return self._done(record, self._not_found(request))
        if request.method == "POST":
            if call.status in ("completed", "canceled", "failed", "busy", "no-answer"):
                refusal = twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
                return self._done(record, refusal)
            self._apply_call_update(call, record.params)
        return self._done(record, JSONResponse(_call_json(self.state, call)))

    def _apply_call_update(self, call: FakeCall, params: dict[str, str]) -> None:
        call.updates.append(dict(params))
        if params.get("Status") in ("completed", "canceled"):
            call.status = params["Status"]
        if "Twiml" in params:
            call.twiml = params["Twiml"]
        if "Url" in params:
            call.url = params["Url"]

    async def list_numbers(self, request: Request) -> Response:
        record, refused = await self._admit(request)
        if refused is not None:
            return self._done(record, refused)
        wanted = record.params.get("PhoneNumber", "")
        found = [n for n in self.state.numbers.values() if wanted in n.phone_number]
        path = request.url.path
        page = {
            "incoming_phone_numbers": [_number_json(self.state, n) for n in found],
            "start": 0,
            "end": max(len(found) - 1, 0),
            "page": 0,
            "page_size": 50,
            "uri": path,
            "first_page_uri": path,
            "next_page_uri": None,
            "previous_page_uri": None,
        }
        return self._done(record, JSONResponse(page))

    async def update_number(self, request: Request) -> Response:
        record, refused = await self._admit(request)
        if refused is not None:
            return self._done(record, refused)
        number = self.state.numbers.get(request.path_params["number_sid"])
        if number is None:
            return self._done(record, self._not_found(request))
        p = record.params
        number.voice_url = p.get("VoiceUrl", number.voice_url)
        number.voice_method = p.get("VoiceMethod", number.voice_method)
        number.status_callback = p.get("StatusCallback", number.status_callback)
        number.status_callback_method = p.get("StatusCallbackMethod", number.status_callback_method)
        return self._done(record, JSONResponse(_number_json(self.state, number)))

    async def anything_else(self, request: Request) -> Response:
        record, refused = await self._admit(request)
        return self._done(record, refused or self._not_found(request))


def fake_twilio_app(
    account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN
) -> tuple[Starlette, FakeTwilioState]:
    """The fake REST API and the state it records into."""
    state = FakeTwilioState(account_sid=account_sid, auth_token=auth_token)
    api = _Api(state)
    routes = [
        Route(f"{API}/Calls.json", api.create_call, methods=["POST"]),
        Route(f"{API}/Calls/{{call_sid}}.json", api.call, methods=["GET", "POST"]),
        Route(f"{API}/IncomingPhoneNumbers.json", api.list_numbers, methods=["GET"]),
        Route(
            f"{API}/IncomingPhoneNumbers/{{number_sid}}.json", api.update_number, methods=["POST"]
        ),
        Route("/{path:path}", api.anything_else, methods=["GET", "POST", "DELETE"]),
    ]
    return Starlette(routes=routes), state


@contextmanager
def serve_in_thread(app: Starlette, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` with uvicorn on a free port in a daemon thread; yield its base URL.

    A thread (not a task) so blocking clients, such as twilio's, and sync tests can use it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
