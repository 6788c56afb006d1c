"""Twilio's HTTP webhooks: `POST /twilio/voice` (returns TwiML) and `POST /twilio/status`."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import structlog
from starlette.requests import Request
from starlette.responses import Response

from app.agents.session import (
    AGENT_PARAM,
    DIRECTION_PARAM,
    RESERVED_PARAMS,
    CallConnector,
    facts_from_parameters,
)
from app.services import Services
from app.twilio.public_url import public_base, request_public_url
from app.twilio.stream_tokens import CALL_SID_PARAM, TOKEN_PARAM
from telephony.signatures import is_valid_signature, websocket_url
from telephony.twiml import say_and_hangup_twiml, stream_twiml

log = structlog.get_logger()

# Twilio's webhooks are a few hundred bytes of form data; anything far larger is not Twilio.
MAX_FORM_BYTES = 64 * 1024
CALL_SID_RE = re.compile(r"^CA[0-9A-Za-z]{10,64}$")
DRAINING_NOTICE = "Sorry, this line is being serviced right now. Please call again in a minute."
XML = "text/xml"


async def read_signed_form(services: Services, request: Request) -> dict[str, str] | Response:
    """The form, or the error response: 413 when oversized, 403 when not signed by Twilio."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        return Response("request too large", status_code=413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return Response("request too large", status_code=413)
    form = _parse_form(body)
    token = services.settings.secret("twilio_auth_token")
    if services.settings.verify_signatures:
        url = request_public_url(services, request)
        signature = request.headers.get("x-twilio-signature")
        if token is None or not is_valid_signature(token, url, form, signature):
            services.observe_signature_failure("webhook")
            log.warning("webhook.bad_signature", path=request.url.path)
            return Response("invalid Twilio signature", status_code=403)
    return form


def _parse_form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def voice(request: Request) -> Response:
    services: Services = request.app.state.services
    form = await read_signed_form(services, request)
    if isinstance(form, Response):
        return form
    call_sid = form.get("CallSid", "")
    if not CALL_SID_RE.match(call_sid):
        return Response("missing or malformed CallSid", status_code=400)
    bound = log.bind(call_sid=call_sid)
    if services.draining:
        bound.info("webhook.refused_draining")
        return Response(say_and_hangup_twiml(DRAINING_NOTICE), media_type=XML)
    refusal = await services.capacity.admit(call_sid, services.active_calls.keys())
    if refusal is not None:
        bound.info("webhook.refused_capacity", scope=refusal.scope)
        return Response(refusal.twiml, media_type=XML)
    base = public_base(services, request)
    parameters, call = agent_call(services, call_sid, form, dict(request.query_params))
    parameters[TOKEN_PARAM] = services.stream_tokens.issue(call_sid, covers=parameters)
    twiml = stream_twiml(
        websocket_url(base) + "/twilio/media",
        parameters,
        status_callback=base + "/twilio/status",
    )
    services.prewarm.start(call_sid, call.open)
    bound.info(
        "webhook.voice", caller=form.get("From"), direction=form.get("Direction"),
        agent=call.agent.name,
    )  # fmt: skip
    return Response(twiml, media_type=XML)


def agent_call(
    services: Services, call_sid: str, form: dict[str, str], query: dict[str, str]
) -> tuple[dict[str, str], CallConnector]:
    """The stream's <Parameter>s and the call's connector, as its agent answers it.

    The agent: `?agent=NAME` on the (signed) webhook URL, as `voicebot call --agent`
    sets it, else by number (see `AgentBook.for_call`). The URL's other query
    parameters ride along to the hook, the stream and the tools.
    """
    direction = form.get("Direction", "inbound")[:32]
    agent = services.agents.for_call(
        to=form.get("To", ""), from_=form.get("From", ""), direction=direction,
        requested=query.get(AGENT_PARAM),
    )  # fmt: skip
    parameters = {k[:64]: v[:256] for k, v in list(query.items())[:8] if k not in RESERVED_PARAMS}
    parameters |= {
        CALL_SID_PARAM: call_sid,
        "from": form.get("From", "")[:64],
        "to": form.get("To", "")[:64],
        DIRECTION_PARAM: direction,
        AGENT_PARAM: agent.name,
    }
    if query.get(AGENT_PARAM) not in (None, agent.name):
        log.warning("webhook.unknown_agent", requested=query[AGENT_PARAM][:64], using=agent.name)
    facts = facts_from_parameters(call_sid, parameters, agent.name)
    return parameters, CallConnector(services, agent, facts)


async def status(request: Request) -> Response:
    services: Services = request.app.state.services
    form = await read_signed_form(services, request)
    if isinstance(form, Response):
        return form
    log.info(
        "webhook.status",
        call_sid=form.get("CallSid"),
        stream_sid=form.get("StreamSid"),
        stream_event=form.get("StreamEvent"),
        call_status=form.get("CallStatus"),
        stream_error=form.get("StreamError"),
    )
    return Response(status_code=204)
