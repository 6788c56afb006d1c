"""Per-call tool state held in this process, and the encoding both state stores share."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from app.errors import StateStoreError


def encode_value(key: str, value: Any) -> str:
    if not isinstance(key, str) or not key:
        raise StateStoreError(f"state keys are non-empty strings, got {key!r}")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateStoreError(f"state value for {key!r} is not JSON: {exc}") from None


def check_sid(call_sid: str) -> None:
    if not isinstance(call_sid, str) or not call_sid:
        raise StateStoreError(f"call sid must be a non-empty string, got {call_sid!r}")


def copy_value(value: Any) -> Any:
    # A JSON round trip: callers never share mutable objects with the store.
    return json.loads(json.dumps(value))


class MemoryStateStore:
    """State held in this process: for development and single-instance deployments."""

    def __init__(self, ttl_seconds: float | None = None) -> None:
        self._ttl = ttl_seconds
        self._data: dict[str, dict[str, str]] = {}
        self._expires: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def load(self, call_sid: str) -> dict[str, Any]:
        check_sid(call_sid)
        async with self._lock:
            return {k: json.loads(v) for k, v in self._fields(call_sid).items()}

    async def set_fields(self, call_sid: str, mapping: Mapping[str, Any]) -> None:
        check_sid(call_sid)
        encoded = {k: encode_value(k, v) for k, v in mapping.items()}
        async with self._lock:
            self._fields(call_sid).update(encoded)
            self._touch(call_sid)

    async def update_field(
        self, call_sid: str, key: str, fn: Callable[[Any], Any], *, default: Any = None
    ) -> Any:
        check_sid(call_sid)
        async with self._lock:
            fields = self._fields(call_sid)
            current = json.loads(fields[key]) if key in fields else copy_value(default)
            new = fn(current)
            fields[key] = encode_value(key, new)
            self._touch(call_sid)
            return copy_value(new)

    async def seed(self, call_sid: str, facts: Mapping[str, Any]) -> None:
        check_sid(call_sid)
        encoded = {k: encode_value(k, v) for k, v in facts.items()}
        async with self._lock:
            self._purge_expired()
            fields = self._fields(call_sid)
            for k, v in encoded.items():
                fields.setdefault(k, v)
            self._touch(call_sid)

    async def delete(self, call_sid: str) -> None:
        async with self._lock:
            self._data.pop(call_sid, None)
            self._expires.pop(call_sid, None)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    def _fields(self, call_sid: str) -> dict[str, str]:
        expires = self._expires.get(call_sid)
        if expires is not None and expires <= time.monotonic():
            self._data.pop(call_sid, None)
            self._expires.pop(call_sid, None)
        return self._data.setdefault(call_sid, {})

    def _touch(self, call_sid: str) -> None:
        if self._ttl is not None:
            self._expires[call_sid] = time.monotonic() + self._ttl

    def _purge_expired(self) -> None:
        # Called at call start, so a long-running process does not keep every call.
        now = time.monotonic()
        for sid in [s for s, t in self._expires.items() if t <= now]:
            self._data.pop(sid, None)
            self._expires.pop(sid, None)
