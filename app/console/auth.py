"""Console access: log in with the admin token, then a signed session cookie.

The cookie is `v1.<expiry>.<nonce>.<mac>`, the MAC an HMAC-SHA256 keyed from the admin
token: stateless, so any instance behind a balancer accepts it, and changing the token
logs everyone out. It is HttpOnly (no script reads it), SameSite=Strict (no other site's
page sends it along) and Secure when the console is served over https.

Browsers do send cookies on cross-site WebSocket upgrades, and CORS does not apply to
WebSockets, so upgrades (and state-changing POSTs) also check that `Origin` is this
console's own origin: cross-site WebSocket hijacking fails there.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

COOKIE = "voicebot_console"
COOKIE_PATH = "/console"
SESSION_SECONDS = 12 * 3600
# Failed logins allowed per minute (all clients together) before answering 429.
LOGIN_FAILURES_PER_MINUTE = 10


class ConsoleAuth:
    def __init__(self, admin_token: str, *, public_base_url: str | None, trust_proxy: bool) -> None:
        self._token = admin_token.encode()
        self._key = hmac.new(self._token, b"voicebot console session v1", hashlib.sha256).digest()
        self._public_origin = _origin(public_base_url) if public_base_url else None
        self._trust_proxy = trust_proxy
        self._failures: deque[float] = deque(maxlen=LOGIN_FAILURES_PER_MINUTE)

    # --- login -------------------------------------------------------------------
    def throttled(self) -> bool:
        return (
            len(self._failures) == self._failures.maxlen
            and time.monotonic() - self._failures[0] < 60
        )

    def check_token(self, presented: str) -> bool:
        # Constant time: the comparison must not tell how much of a guess was right.
        ok = hmac.compare_digest(presented.encode(), self._token)
        if not ok:
            self._failures.append(time.monotonic())
        return ok

    def new_session(self, now: float | None = None) -> str:
        expiry = int((now or time.time()) + SESSION_SECONDS)
        body = f"v1.{expiry}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._mac(body)}"

    # --- checks ------------------------------------------------------------------
    def valid_session(self, cookie: str | None, now: float | None = None) -> bool:
        if not cookie or cookie.count(".") != 3:
            return False
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return False
        expiry = body.split(".")[1]
        return expiry.isdigit() and int(expiry) > (now or time.time())

    def authenticated(self, conn: HTTPConnection) -> bool:
        return self.valid_session(conn.cookies.get(COOKIE))

    def same_origin(self, conn: HTTPConnection) -> bool:
        """The request comes from a page of this console (Origin = our own origin)."""
        origin = conn.headers.get("origin")
        if not origin:
            return False
        return _origin(origin) in self.allowed_origins(conn)

    def allowed_origins(self, conn: HTTPConnection) -> set[str]:
        # The Host header is what the browser connected to; a page on another site
        # cannot set it, but its Origin names that other site.
        scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
        host = conn.headers.get("host", "")
        allowed = {f"{scheme}://{host.lower()}"}
        if self._trust_proxy:
            proto = conn.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
            fwd_host = conn.headers.get("x-forwarded-host", host).split(",")[0].strip()
            allowed.add(f"{proto}://{fwd_host.lower()}")
        if self._public_origin:
            allowed.add(self._public_origin)
        return allowed

    def secure_cookie(self, conn: HTTPConnection) -> bool:
        if self._public_origin:
            return self._public_origin.startswith("https:")
        if self._trust_proxy:
            return conn.headers.get("x-forwarded-proto", "").startswith("https")
        return conn.url.scheme in ("https", "wss")

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"
