"""The few Twilio REST calls the service makes: hang up, redirect, configure a number, dial.

The bridge and tools depend on the small `TwilioRest` Protocol; `TwilioRestClient` is the
real one, built on twilio's own `Client` (so request shapes and error parsing are
Twilio's), run in a worker thread because that client is blocking. `base_url` sends every
request elsewhere (the fake in `app.dev.fakes.twilio_rest`): there is no other way to test REST
without reaching Twilio.

Protocol facts (shared/protocols.md section 1): hang up = update Status=completed;
transfer = update Twiml=<Response><Dial>..; error 20404 / HTTP 404 on a call means the
call is already gone, which for hang up and redirect is success.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests  # twilio's own HTTP dependency
import structlog
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from app.errors import VoicebotError

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Twilio answers in well under a second; a hung connection must not hold a call's
# hang-up (or a CLI) hostage. Applies to connect and to each read.
DEFAULT_TIMEOUT = 10.0

_NOT_FOUND = 20404
# "Call is not in-progress" (invalid call state): the call ended between our decision
# and the request. Recalled from Twilio's error catalogue, not verified against the API.
_CALL_NOT_IN_PROGRESS = 21220
_AUTH_FAILED = 20003


class TwilioRestError(VoicebotError):
    """A Twilio REST request failed. The message never contains the auth token."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class TwilioRest(Protocol):
    """What the service needs from Twilio's REST API (tests pass fakes of this)."""

    async def hangup(self, call_sid: str) -> None: ...

    async def redirect(self, call_sid: str, twiml: str) -> None: ...

    async def configure_number(
        self, phone_number: str, voice_url: str, status_callback_url: str
    ) -> str: ...

    async def create_call(
        self, to: str, from_: str, url: str, status_callback: str | None
    ) -> str: ...


def rebase_url(url: str, base_url: str | None) -> str:
    """`url` sent to `base_url` instead when it is for a *.twilio.com host."""
    parts = urlsplit(url)
    if base_url is None or not (parts.hostname or "").endswith("twilio.com"):
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{base_url.rstrip('/')}{parts.path}{query}"


class _RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """twilio's blocking HTTP client, with every request sent to `base_url`."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, rebase_url(url, self._base_url), *args, **kwargs)


class TwilioRestClient:
    """`TwilioRest` over twilio's `Client`, optionally pointed at another base URL."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.account_sid = account_sid
        self._token = auth_token
        self._timeout = timeout
        self._http = _RebasedHttpClient(base_url, timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        # twilio's Client also reads TWILIO_EDGE / TWILIO_REGION from os.environ; our
        # settings are the only source of configuration, so pin the default host.
        self._client.edge = None
        self._client.region = None

    async def hangup(self, call_sid: str) -> None:
        done = await self._update_call(call_sid, "hang up", status="completed")
        log.info("twilio.hangup", call_sid=call_sid, already_gone=not done)

    async def redirect(self, call_sid: str, twiml: str) -> None:
        done = await self._update_call(call_sid, "redirect", twiml=twiml)
        log.info("twilio.redirect", call_sid=call_sid, already_gone=not done)

    async def configure_number(
        self, phone_number: str, voice_url: str, status_callback_url: str
    ) -> str:
        def work() -> str:
            found = self._client.incoming_phone_numbers.list(phone_number=phone_number)
            # The PhoneNumber filter also matches partial numbers: insist on an exact one.
            exact = [n for n in found if n.phone_number == phone_number]
            if not exact:
                raise TwilioRestError(
                    f"{phone_number} is not a phone number on Twilio account "
                    f"{self.account_sid}; check the number (E.164, e.g. +15551234567) "
                    "or buy/port it in the Twilio console first"
                )
            self._client.incoming_phone_numbers(exact[0].sid).update(
                voice_url=voice_url,
                voice_method="POST",
                status_callback=status_callback_url,
                status_callback_method="POST",
            )
            return str(exact[0].sid)

        return await self._run("configure number", work)

    async def create_call(self, to: str, from_: str, url: str, status_callback: str | None) -> str:
        extra: dict[str, str] = {}
        if status_callback is not None:
            extra = {"status_callback": status_callback, "status_callback_method": "POST"}

        def work() -> str:
            call = self._client.calls.create(to=to, from_=from_, url=url, method="POST", **extra)
            return str(call.sid)

        return await self._run("create call", work)

    async def list_numbers(self) -> list[str]:
        """Every phone number on the account (the CLI's default caller ID)."""

        def work() -> list[str]:
            return [str(n.phone_number) for n in self._client.incoming_phone_numbers.list()]

        return await self._run("list numbers", work)

    def close(self) -> None:
        if self._http.session is not None:
            self._http.session.close()

    async def _update_call(self, call_sid: str, action: str, **changes: str) -> bool:
        """Update a call; False when Twilio says it is already gone (that is success)."""

        def work() -> bool:
            try:
                self._client.calls(call_sid).update(**changes)
            except TwilioRestException as exc:
                if exc.status == 404 or exc.code in (_NOT_FOUND, _CALL_NOT_IN_PROGRESS):
                    return False
                raise
            return True

        return await self._run(action, work)

    async def _run(self, action: str, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except TwilioRestError:
            raise
        except TwilioRestException as exc:
            raise self._rest_error(action, exc) from None
        except requests.Timeout:
            message = f"Twilio {action} failed: no answer within {self._timeout} s"
            raise TwilioRestError(message) from None
        except OSError as exc:  # requests' other errors (refused, DNS, TLS) are OSErrors
            message = f"Twilio {action} failed: could not reach the API ({type(exc).__name__})"
            raise TwilioRestError(self._scrub(message)) from None
        except TwilioException as exc:
            raise self._other_error(action, exc) from None

    def _rest_error(self, action: str, exc: TwilioRestException) -> TwilioRestError:
        return self._error(action, exc.status, exc.code, str(exc.msg or "no message"))

    def _other_error(self, action: str, exc: TwilioException) -> TwilioRestError:
        # A failed list page raises TwilioException("Unable to fetch page", response)
        # instead of TwilioRestException: dig Twilio's error JSON out of the response.
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", None)
        if not isinstance(status, int):
            return TwilioRestError(self._scrub(f"Twilio {action} failed: {exc.args[0]}"))
        try:
            body = json.loads(getattr(response, "text", ""))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        detail = str(body.get("message") or exc.args[0])
        return self._error(action, status, body.get("code"), detail)

    def _error(self, action: str, status: int, code: int | None, detail: str) -> TwilioRestError:
        if status == 401 or code == _AUTH_FAILED:
            detail = (
                "Twilio rejected the credentials; check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            )
        message = f"Twilio {action} failed (HTTP {status}, code {code}): {detail}"
        return TwilioRestError(self._scrub(message), status=status, code=code)

    def _scrub(self, text: str) -> str:
        # Belt and braces: Twilio's messages should never echo the token, but if one
        # ever did, it must not reach a log line or a terminal.
        return text.replace(self._token, "[redacted]") if self._token else text
