"""`X-Twilio-Signature`: compute and check with twilio's `RequestValidator`.

Wire facts (docs/protocols.md §2):
- signature = base64(HMAC-SHA1(auth token, URL + each POST param name+value sorted by name)).
- The URL is the *public* one Twilio called, so it is rebuilt from the configured public
  base URL, never from what the app sees behind a proxy.
- The WebSocket upgrade is signed over the `wss://` URL with empty params; the `https://`
  form does not validate.
- Accounts using shared keys send `X-Twilio-Webhooks-Signature-Settings` naming
  HMAC_SHA256; pass `algorithm` (see `signature_algorithm`) to follow it.

The auth token is a secret: it never appears in an exception or a log line from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator, get_signature_algorithm

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_SETTINGS_HEADER",
    "compute_signature",
    "is_valid_signature",
    "public_url",
    "signature_algorithm",
    "websocket_url",
]

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

_WS_SCHEMES = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}


def _validator(auth_token: str) -> RequestValidator:
    if not auth_token:
        raise ValueError("Twilio auth token is empty")
    return RequestValidator(auth_token)


def compute_signature(
    auth_token: str, url: str, params: Mapping[str, str], algorithm: str | None = None
) -> str:
    """The `X-Twilio-Signature` Twilio would send for a request to `url` with `params`."""
    signature: str = _validator(auth_token).compute_signature(url, dict(params), algorithm)
    return signature


def is_valid_signature(
    auth_token: str,
    url: str,
    params: Mapping[str, str],
    signature: str | None,
    algorithm: str | None = None,
) -> bool:
    """True when `signature` signs exactly `url` + `params`; a missing header is invalid.

    The validator compares in constant time and also accepts the URL with its default port
    added or removed, since Twilio is inconsistent about that.
    """
    if not signature:
        return False
    valid: bool = _validator(auth_token).validate(url, dict(params), signature, algorithm)
    return valid


def signature_algorithm(settings_header: str | None) -> str:
    """The algorithm named by `X-Twilio-Webhooks-Signature-Settings` (HMAC_SHA1 if absent)."""
    algorithm: str = get_signature_algorithm(settings_header)
    return algorithm


def public_url(base_url: str, path: str, query: str = "") -> str:
    """The URL Twilio called: the configured public base joined with the request path/query.

    A path prefix on the base is kept (a proxy that strips `/prefix` before the app).
    """
    parts = urlsplit(base_url)
    if parts.scheme not in _WS_SCHEMES or not parts.netloc:
        raise ValueError("public base URL must be an absolute http(s):// or ws(s):// URL")
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, query.lstrip("?"), ""))


def websocket_url(public_http_url: str) -> str:
    """`https://` -> `wss://`, `http://` -> `ws://` (already-ws URLs pass through)."""
    parts = urlsplit(public_http_url)
    scheme = _WS_SCHEMES.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError("expected an absolute http(s):// URL")
    return urlunsplit(parts._replace(scheme=scheme))
