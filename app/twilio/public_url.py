"""The public URL Twilio reaches us at, which is what Twilio signs.

Behind a proxy the app sees its own address, not the one Twilio called: the base comes
from `PUBLIC_BASE_URL`, or from `X-Forwarded-Proto`/`X-Forwarded-Host` only when the
proxy is trusted (`TRUST_PROXY_HEADERS`). Used by the webhooks and the media endpoint.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from app.services import Services
from telephony.signatures import public_url


def public_base(services: Services, request: HTTPConnection) -> str:
    """The base URL Twilio reaches us at: configured, or from a trusted proxy's headers."""
    settings = services.settings
    if settings.public_base_url:
        return settings.public_base_url
    if settings.trust_proxy_headers:
        proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0]
        host = request.headers.get("x-forwarded-host", request.url.netloc).split(",")[0]
        return f"{proto.strip()}://{host.strip()}"
    return f"{request.url.scheme}://{request.url.netloc}"


def request_public_url(services: Services, request: HTTPConnection) -> str:
    """The URL Twilio signed: the public base joined with what was requested."""
    return public_url(public_base(services, request), request.url.path, request.url.query)
