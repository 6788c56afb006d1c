"""A local stand-in for Google's OAuth 2.0 token endpoint, and service-account keys for it.

Vertex AI tests need real google-auth code to mint and refresh access tokens offline:
`service_account_key(token_uri=server.token_uri)` makes a service-account key file (a
fresh RSA key) whose `token_uri` points here, and google-auth's service-account flow
(a JWT signed with that key, POSTed as `grant_type=urn:ietf:params:oauth:grant-type:
jwt-bearer`) gets a token with the lifetime the test chose. The server checks the JWT's
signature against the public keys it was given, and `is_valid(token)` tells the fake Live
server which Bearer tokens to accept (issued here and not yet expired).

It serves plain HTTP from a thread: google-auth's `requests` transport is synchronous and
may be called from any thread (the Live clients refresh in a worker thread).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses the assertion to Google's token endpoint whatever `token_uri`
# says (it only changes where the request goes).
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def service_account_key(
    token_uri: str, project: str = "fake-project", email: str | None = None
) -> tuple[dict[str, Any], str]:
    """A service-account key (as in a downloaded key file) and its public key in PEM."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key_id = secrets.token_hex(8)
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email or f"voicebot@{project}.iam.gserviceaccount.com",
        "client_id": "1" * 21,
        "token_uri": token_uri,
    }
    return info, public_pem


class FakeTokenServer:
    """`POST /token` as Google's endpoint answers it; tokens live `lifetime_s` seconds."""

    def __init__(self, lifetime_s: float = 3600.0, host: str = "127.0.0.1") -> None:
        self.lifetime_s = lifetime_s
        self._host = host
        self._keys: dict[str, str] = {}  # private_key_id -> public PEM
        self._tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: One entry per token request: (client_email, accepted).
        self.requests: list[tuple[str, bool]] = []

    def trust(self, key_id: str, public_pem: str) -> None:
        """Accept JWTs signed by this key (as Google knows a service account's keys)."""
        self._keys[key_id] = public_pem

    @property
    def token_uri(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeTokenServer not started")
        return f"http://{self._host}:{self._httpd.server_address[1]}/token"

    def is_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    @property
    def issued(self) -> int:
        return sum(1 for _, ok in self.requests if ok)

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                status, body = server._grant(form)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: tests read `requests`

        self._httpd = ThreadingHTTPServer((self._host, 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        grant = (form.get("grant_type") or [""])[0]
        assertion = (form.get("assertion") or [""])[0]
        if grant != JWT_BEARER or not assertion:
            return HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"}
        header = jwt.decode_header(assertion)
        public = self._keys.get(str(header.get("kid")))
        email = "?"
        try:
            if public is None:
                raise ValueError("unknown key id")
            audience = [GOOGLE_TOKEN_AUDIENCE, self.token_uri]
            claims = jwt.decode(assertion, certs=public, audience=audience)
            email = str(claims.get("iss"))
        except ValueError:
            with self._lock:
                self.requests.append((email, False))
            return HTTPStatus.BAD_REQUEST, {
                "error": "invalid_grant",
                "error_description": "Invalid JWT Signature.",
            }
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = time.monotonic() + self.lifetime_s
            self.requests.append((email, True))
        return HTTPStatus.OK, {
            "access_token": token,
            "expires_in": int(self.lifetime_s),
            "token_type": "Bearer",
        }
