"""Short-lived, single-use tokens binding a Media Stream to the webhook that created it.

Twilio signs the WebSocket upgrade against `wss://HOST/twilio/media` with empty
params, the same URL for every call, so a captured upgrade could be replayed. The
voice webhook (signed over the call's own params) therefore issues a token for its
call sid; it rides back in `start.customParameters` and must match the call, be
unexpired, and unused. The HMAC key derives from the Twilio auth token so every
instance sharing the configuration accepts it; the used-set lives in Redis when
configured, so a replay is refused across instances too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.errors import SignatureError

log = structlog.get_logger()

TOKEN_PARAM = "stream_token"
CALL_SID_PARAM = "call_sid"


class UsedTokens(Protocol):
    async def claim(self, token_id: str, ttl_seconds: float) -> bool:
        """Record the token as used; False when it already was."""
        ...


class MemoryUsedTokens:
    def __init__(self) -> None:
        self._used: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def claim(self, token_id: str, ttl_seconds: float) -> bool:
        async with self._lock:
            now = time.monotonic()
            self._used = {k: t for k, t in self._used.items() if t > now}
            if token_id in self._used:
                return False
            self._used[token_id] = now + ttl_seconds
            return True


class RedisUsedTokens:
    """`SET NX EX` on `voicebot:stream-token:{id}`: atomic across instances.

    A Redis outage must not refuse every new call: while Redis is unreachable, tokens are
    claimed in this process instead (a replay is still refused here; across instances
    only the token's short TTL and its binding to the call sid remain).
    """

    def __init__(self, redis: Redis, *, on_error: Callable[[], None] = lambda: None) -> None:
        self._redis = redis
        self._fallback = MemoryUsedTokens()
        self._on_error = on_error  # every failed Redis call (a metric)

    async def claim(self, token_id: str, ttl_seconds: float) -> bool:
        if not await self._fallback.claim(token_id, ttl_seconds):
            return False  # claimed here during an outage
        try:
            result = await self._redis.set(
                f"voicebot:stream-token:{token_id}", "1", nx=True, ex=max(1, int(ttl_seconds) + 1)
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._on_error()
            log.warning("stream_token.redis_unavailable", error=str(exc))
            return True
        return bool(result)


class StreamTokens:
    def __init__(self, key: bytes | None, ttl_seconds: float, used: UsedTokens) -> None:
        # Without a shared secret (unsigned local development) a per-process key is
        # fine: webhook and stream then have to land on the same process.
        self._key = hashlib.sha256(b"voicebot-stream-token\0" + (key or secrets.token_bytes(32)))
        self._ttl = ttl_seconds
        self._used = used

    def issue(
        self, call_sid: str, now: float | None = None, covers: Mapping[str, str] | None = None
    ) -> str:
        """A token for `call_sid`, also covering the stream's other `<Parameter>`s
        (`covers`, e.g. the chosen agent): a stream whose parameters were altered is
        refused, so the media side may trust them."""
        expires = int((now if now is not None else time.time()) + self._ttl)
        nonce = secrets.token_hex(8)
        body = f"{expires}.{nonce}"
        return f"{body}.{self._sign(call_sid, body, covers)}"

    async def redeem(
        self,
        call_sid: str,
        token: str | None,
        now: float | None = None,
        covers: Mapping[str, str] | None = None,
    ) -> None:
        """Raise `SignatureError` unless the token is valid for this call (and the
        parameters it covers) and unused."""
        if not token:
            raise SignatureError("stream token missing")
        try:
            expires_text, nonce, signature = token.split(".")
            expires = int(expires_text)
        except ValueError:
            raise SignatureError("stream token malformed") from None
        expected = self._sign(call_sid, f"{expires_text}.{nonce}", covers)
        if not hmac.compare_digest(signature, expected):
            raise SignatureError("stream token does not match this call")
        current = now if now is not None else time.time()
        if expires < current:
            raise SignatureError("stream token expired")
        if not await self._used.claim(f"{call_sid}:{nonce}", expires - current + 1):
            raise SignatureError("stream token already used")

    def _sign(self, call_sid: str, body: str, covers: Mapping[str, str] | None = None) -> str:
        message = f"{call_sid}.{body}".encode()
        if covers:
            # Unambiguous: JSON of the sorted pairs (names and values may hold dots).
            message += b"." + orjson.dumps(sorted(covers.items()))
        mac = hmac.new(self._key.digest(), message, hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:18]).decode()
