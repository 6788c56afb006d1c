"""Seeing the frames google-genai receives before it parses them (the SDK client only).

google-genai drops top-level keys it does not know, and a frame of only unknown keys (or
only `error`) makes it raise TypeError, so the SDK client cannot tell what came. The
direct client reports such kinds (`options.KindReporter`); for the same report here each
frame's keys are looked at first, through websockets' public `create_connection` option
(a `ClientConnection` subclass), which the SDK passes on from `async_client_args`. Costs
one orjson parse per received frame, small next to the SDK's own pydantic work.
"""

from __future__ import annotations

import contextvars
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.typing import Data

from app.live.options import KindReporter, unknown_kinds


class FrameWatch:
    """What one SDK connection received last, and its unknown kinds reported."""

    def __init__(self, kinds: KindReporter) -> None:
        self._kinds = kinds
        #: The last frame held nothing the SDK knows (so its error is no broken session).
        self.unknown_only = False
        #: The last frame's top-level keys (for a setup error that says what came instead).
        self.last_keys: list[str] = []

    def saw(self, frame: Data) -> None:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.unknown_only = False
            return
        self.last_keys = sorted(message)[:5] if isinstance(message, dict) else []
        kinds = unknown_kinds(message) if isinstance(message, dict) else []
        self.unknown_only = bool(kinds) and len(kinds) == len(message)
        if kinds:
            self._kinds.report(kinds)


WATCH: contextvars.ContextVar[FrameWatch | None] = contextvars.ContextVar(
    "live_frame_watch", default=None
)


class WatchedConnection(ClientConnection):
    """A websockets client connection that shows each received frame to a `FrameWatch`
    (the one in context when the SDK opened it, i.e. during `GeminiConnector.connect`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = WATCH.get()

    async def recv(self, decode: bool | None = None) -> Data:  # type: ignore[override]
        frame = await super().recv(decode)
        if self._watch is not None:
            self._watch.saw(frame)
        return frame
