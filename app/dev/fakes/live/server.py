"""A local stand-in for the Gemini Live API: a TLS WebSocket server speaking its wire protocol.

Point google-genai at it with
`genai.Client(api_key=..., http_options={"base_url": server.base_url,
"api_version": "v1beta", "async_client_args": {"ssl": server.client_ssl_context()}})`,
or set SSL_CERT_FILE to `server.ca_pem_path`. What it says is scripted by a `Scenario`;
what it saw is in `server.sessions`, one `SessionRecord` per connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
import tempfile
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from app.dev.fakes.live import generate, wire
from app.dev.fakes.live.records import Conversation, SessionRecord
from app.dev.fakes.live.scenario import Scenario
from app.dev.fakes.live.session import LiveSession
from app.dev.fakes.live.shared import SharedState
from app.dev.fakes.live.tls import ThrowawayCA

API_KEY_HEADER = "x-goog-api-key"


class FakeLiveServer:
    """Serve `scenario` on wss://host:port (port 0 picks a free one)."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cert_dir: Path | None = None,
        token_check: Callable[[str], bool] | None = None,
    ) -> None:
        """`token_check`: decides whether a Vertex AI Bearer token is valid (e.g. the
        fake OAuth endpoint's `FakeTokenServer.is_valid`); None accepts any non-empty one."""
        self.scenario = scenario if scenario is not None else Scenario()
        self._token_check = token_check
        self.host = host
        self._requested_port = port
        self._cert_dir = cert_dir
        self._tls: ThrowawayCA | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: Server | None = None
        self._port: int | None = None
        self._ca_pem_path: Path | None = None
        self._shared = SharedState()
        self._new_session = asyncio.Condition()
        #: One record per WebSocket connection that reached the handler, in order.
        self.sessions: list[SessionRecord] = []
        #: Request paths turned away with 404 before the WebSocket handshake.
        self.rejected_paths: list[str] = []
        #: generateContent requests (post-call analysis), in order.
        self.generate_requests: list[generate.GenerateRecord] = []
        #: Vertex AI requests turned away with 401 (no or an invalid Bearer token).
        self.rejected_tokens = 0

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FakeLiveServer already started")
        if self._cert_dir is not None:
            self._tls = ThrowawayCA.in_dir(self._cert_dir)
            self._ca_pem_path = self._cert_dir / "ca.pem"
        else:
            self._tls = ThrowawayCA()
            self._tmp = tempfile.TemporaryDirectory(prefix="fake-live-")
            self._ca_pem_path = self._tls.write_ca_pem(Path(self._tmp.name) / "ca.pem")
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            ssl=self._tls.server_context(),
            process_request=self._check_path,
            # The real service does not ping clients; leave keepalive to the client.
            ping_interval=None,
            max_size=16 * 2**20,
            # Plain POSTs (generateContent) are answered by the connection itself.
            create_connection=generate.for_server(lambda: self.scenario, self.generate_requests),
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection (1001 going away) and the listening socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> FakeLiveServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- what clients need ------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeLiveServer not started")
        return self._port

    @property
    def base_url(self) -> str:
        """For `http_options.base_url`; google-genai swaps the scheme for wss."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def ca_pem_path(self) -> Path:
        """The CA certificate file (for SSL_CERT_FILE); exists while the server runs."""
        if self._ca_pem_path is None:
            raise RuntimeError("FakeLiveServer not started")
        return self._ca_pem_path

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting the server's throwaway CA."""
        if self._tls is None:
            raise RuntimeError("FakeLiveServer not started")
        return self._tls.client_context()

    # --- what tests inspect -----------------------------------------------------------

    @property
    def conversations(self) -> dict[str, Conversation]:
        """Conversations by id, in their latest state (resumed ones included)."""
        return self._shared.conversations

    async def wait_for_sessions(self, count: int) -> list[SessionRecord]:
        """Wait until `count` connections have arrived (wrap in `asyncio.timeout`)."""
        async with self._new_session:
            await self._new_session.wait_for(lambda: len(self.sessions) >= count)
        return self.sessions[:count]

    # --- connection handling ----------------------------------------------------------

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if wire.PATH_RE.match(request.path):
            return None
        if wire.VERTEX_PATH_RE.match(request.path):
            # Vertex checks the OAuth token at the handshake (how it refuses a bad one is
            # unverified; an HTTP 401 is what Google's front ends answer to bad OAuth).
            token = _bearer(request.headers.get("Authorization"))
            if token and (self._token_check is None or self._token_check(token)):
                return None
            self.rejected_tokens += 1
            return connection.respond(
                HTTPStatus.UNAUTHORIZED, "Request had invalid authentication credentials.\n"
            )
        self.rejected_paths.append(request.path)
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None  # set once the handshake (which we passed) completes
        vertex = wire.VERTEX_PATH_RE.match(request.path)
        match = vertex or wire.PATH_RE.match(request.path)
        key = request.headers.get(API_KEY_HEADER)
        expected = self.scenario.api_key
        # Vertex AI authenticates with the Bearer token (checked at the handshake).
        key_ok = (
            vertex is not None
            or expected is None
            or (key is not None and hmac.compare_digest(key.encode(), expected.encode()))
        )
        token = _bearer(request.headers.get("Authorization")) if vertex else None
        record = SessionRecord(
            index=len(self.sessions),
            path=request.path,
            api_version=match.group("version") if match else None,
            api_key_present=key is not None,
            api_key_valid=key_ok,
            vertex=vertex is not None,
            bearer_fingerprint=hashlib.sha256(token.encode()).hexdigest()[:12] if token else None,
            header_names=frozenset(name.lower() for name in request.headers),
        )
        async with self._new_session:
            self.sessions.append(record)
            self._new_session.notify_all()
        await LiveSession(ws, self.scenario, record, self._shared, key_ok).run()


def _bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None
