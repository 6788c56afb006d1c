"""POST each analysed call record to ANALYSIS_WEBHOOK_URL, signed, retried with backoff.

Signature: header `X-Voicebot-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact
request body with ANALYSIS_WEBHOOK_SECRET as the key (verify over the raw bytes, before
parsing, with a constant-time compare). `X-Voicebot-Call-Sid` names the call; the body
is the call record (JSON). A 2xx answer is delivered; 408, 429, 5xx and network errors
are retried (1 s, 2 s, 4 s, ... apart); other 4xx are final. The outcome goes into the
record as `analysis_webhook`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Voicebot-Signature"
CALL_SID_HEADER = "X-Voicebot-Call-Sid"
RETRYABLE = frozenset({408, 425, 429})


def sign(secret: str, body: bytes) -> str:
    """The header value for `body`: `sha256=` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does (documented in docs/agents.md; used by our tests)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class RecordPoster:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        verify_tls: Any = True,
    ) -> None:
        self._url = url
        self._secret = secret
        self._attempts = attempts
        self._backoff = backoff_s
        self._timeout = timeout_s
        self._sleep = sleep
        self._verify = verify_tls

    async def deliver(self, call_sid: str, body: bytes) -> dict[str, Any]:
        """Try until delivered or out of attempts; the outcome, never an exception."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            CALL_SID_HEADER: call_sid,
        }
        last = ""
        async with httpx.AsyncClient(
            timeout=self._timeout, verify=self._verify, trust_env=False
        ) as client:
            for attempt in range(1, self._attempts + 1):
                if attempt > 1:
                    await self._sleep(self._backoff * 2 ** (attempt - 2))
                try:
                    response = await client.post(self._url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {str(exc)[:200]}"
                    continue
                code = response.status_code
                if 200 <= code < 300:
                    return {"status": "delivered", "attempts": attempt, "status_code": code}
                last = f"HTTP {code}"
                if not (code in RETRYABLE or code >= 500):
                    return {"status": "failed", "attempts": attempt, "error": last}
        return {"status": "failed", "attempts": self._attempts, "error": last}
