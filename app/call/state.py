"""Per-call tool state: in process (`MemoryStateStore`) or in Redis (`RedisStateStore`).

Redis key scheme (one key per call):

    {prefix}:call:{call_sid}:state   hash; field = state key, value = the JSON-encoded value
                                     prefix defaults to "voicebot"; TTL = STATE_TTL_SECONDS,
                                     refreshed on every write

Call facts (caller, callee, stream sid, ...) are seeded into the same hash at call start.
Because it is plain Redis, state survives a restart of this service and any instance
sees it. A Redis outage must not end a call: reads fall back to the values last seen by
this process, writes are queued and retried in the background until Redis answers
again (for `retry_for` seconds at most), and every failure is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.call.state_memory import MemoryStateStore, check_sid, copy_value, encode_value
from app.errors import StateStoreError
from app.redis_connect import redis_from_url
from app.settings import Settings
from tools.context import StateStore

log = structlog.get_logger("voicebot.state")

# Errors that mean "Redis is not reachable right now", as opposed to misuse.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


def _misuse(call_sid: str, exc: RedisError) -> StateStoreError:
    # Redis answered but refused (e.g. the key holds another type): not an outage.
    return StateStoreError(f"Redis refused the state operation for {call_sid}: {exc}")


@dataclass
class _Pending:
    """Writes for one call that Redis has not acknowledged yet, newest value per field."""

    delete_first: bool = False
    fields: dict[str, str] = field(default_factory=dict)

    def merge(self, newer: _Pending) -> None:
        if newer.delete_first:
            self.delete_first, self.fields = True, {}
        self.fields.update(newer.fields)


class RedisStateStore:
    """State in Redis, shared by every instance; rides out a Redis outage mid-call."""

    def __init__(
        self,
        url: str,
        ttl_seconds: int,
        *,
        prefix: str = "voicebot",
        retry_for: float = 300.0,
        max_backoff: float = 5.0,
        op_timeout: float = 1.0,
        cache_calls: int = 10_000,
        on_error: Callable[[], None] = lambda: None,  # every failed Redis call (a metric)
    ) -> None:
        # redis-py retries 10 times with exponential backoff by default: an outage
        # would stall every tool for seconds. We try once and do our own retrying.
        self._redis = redis_from_url(
            url,
            decode_responses=True,
            socket_timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._ttl = ttl_seconds
        self._prefix = prefix
        self._retry_for = retry_for
        self._max_backoff = max_backoff
        self._cache: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._cache_calls = cache_calls
        self._pending: dict[str, _Pending] = {}
        self._inflight: set[str] = set()  # calls whose queued writes are being sent now
        self._locks: dict[str, asyncio.Lock] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._on_error = on_error

    def key(self, call_sid: str) -> str:
        return f"{self._prefix}:call:{call_sid}:state"

    @property
    def pending_calls(self) -> frozenset[str]:
        """Calls with writes waiting for Redis to come back."""
        return frozenset(self._pending)

    # --- reads -------------------------------------------------------------------
    async def load(self, call_sid: str) -> dict[str, Any]:
        check_sid(call_sid)
        try:
            raw: dict[str, str] = await self._redis.hgetall(self.key(call_sid))  # type: ignore[assignment]
        except _TRANSIENT as exc:
            self._on_error()
            log.warning("state.read_fallback", call_sid=call_sid, error=str(exc))
            raw = dict(self._cache.get(call_sid, {}))
        except RedisError as exc:
            self._on_error()
            raise _misuse(call_sid, exc) from exc
        else:
            pending = self._pending.get(call_sid)
            if pending is not None:  # Redis is behind this process: our writes win
                raw = ({} if pending.delete_first else raw) | pending.fields
            self._remember(call_sid, raw, replace=True)
        return {k: json.loads(v) for k, v in raw.items()}

    # --- writes ------------------------------------------------------------------
    async def set_fields(self, call_sid: str, mapping: Mapping[str, Any]) -> None:
        check_sid(call_sid)
        encoded = {k: encode_value(k, v) for k, v in mapping.items()}
        if encoded:
            self._remember(call_sid, encoded)
            await self._write(call_sid, _Pending(fields=encoded))

    async def seed(self, call_sid: str, facts: Mapping[str, Any]) -> None:
        check_sid(call_sid)
        encoded = {k: encode_value(k, v) for k, v in facts.items()}
        if not encoded:
            return
        if call_sid not in self._pending and call_sid not in self._inflight:
            try:
                current = await self._seed_in_redis(call_sid, encoded)
            except _TRANSIENT as exc:
                self._on_error()
                log.warning("state.write_queued", call_sid=call_sid, op="seed", error=str(exc))
            except RedisError as exc:
                self._on_error()
                raise _misuse(call_sid, exc) from exc
            else:
                self._remember(call_sid, current, replace=True)
                return
        # Queued: only facts this process has not seen set (HSETNX semantics, best effort).
        known = self._cache.get(call_sid, {})
        fresh = {k: v for k, v in encoded.items() if k not in known}
        self._remember(call_sid, fresh)
        self._queue(call_sid, _Pending(fields=fresh))

    async def _seed_in_redis(self, call_sid: str, encoded: Mapping[str, str]) -> dict[str, str]:
        name = self.key(call_sid)
        async with self._redis.pipeline(transaction=True) as pipe:
            for k, v in encoded.items():
                pipe.hsetnx(name, k, v)
            pipe.expire(name, self._ttl)
            pipe.hgetall(name)  # warms the cache for an outage later
            *_, current = await pipe.execute()
        return dict(current)

    async def delete(self, call_sid: str) -> None:
        check_sid(call_sid)
        self._cache.pop(call_sid, None)
        self._pending.pop(call_sid, None)
        self._locks.pop(call_sid, None)
        await self._write(call_sid, _Pending(delete_first=True))

    async def update_field(
        self, call_sid: str, key: str, fn: Callable[[Any], Any], *, default: Any = None
    ) -> Any:
        check_sid(call_sid)
        encode_value(key, None)  # check the key before touching Redis
        # The local lock makes updates from this process queue up instead of fighting
        # over WATCH; WATCH still guards against other instances.
        async with self._call_lock(call_sid):
            if call_sid not in self._pending or await self._flush_locked(call_sid):
                try:
                    return await self._update_in_redis(call_sid, key, fn, default)
                except _TRANSIENT as exc:
                    self._on_error()
                    log.warning(
                        "state.write_queued", call_sid=call_sid, op="update", error=str(exc)
                    )
                except RedisError as exc:
                    self._on_error()
                    raise _misuse(call_sid, exc) from exc
            # Redis is away: atomic within this process only, from the last known value.
            raw = self._cache.get(call_sid, {}).get(key)
            new = fn(json.loads(raw) if raw is not None else copy_value(default))
            encoded = encode_value(key, new)
            self._remember(call_sid, {key: encoded})
            self._queue(call_sid, _Pending(fields={key: encoded}))
            return json.loads(encoded)

    async def _update_in_redis(
        self, call_sid: str, key: str, fn: Callable[[Any], Any], default: Any
    ) -> Any:
        name = self.key(call_sid)
        async with self._redis.pipeline(transaction=True) as pipe:
            for attempt in range(1000):
                try:
                    await pipe.watch(name)
                    raw = await pipe.hget(name, key)
                    new = fn(json.loads(raw) if raw is not None else copy_value(default))
                    encoded = encode_value(key, new)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(name, key, encoded)
                    pipe.expire(name, self._ttl)
                    await pipe.execute()
                except WatchError:
                    # Another instance wrote first: read again. Jitter breaks lockstep.
                    await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 50)))
                    continue
                self._remember(call_sid, {key: encoded})
                return json.loads(encoded)
        raise StateStoreError(f"update of {key!r} for {call_sid} lost 1000 races in a row")

    async def _write(self, call_sid: str, op: _Pending) -> None:
        if call_sid in self._pending or call_sid in self._inflight:
            # Older writes are still queued: this one must land after them.
            self._queue(call_sid, op)
            return
        try:
            await self._apply(call_sid, op)
        except _TRANSIENT as exc:
            self._on_error()
            log.warning("state.write_queued", call_sid=call_sid, error=str(exc))
            self._queue(call_sid, op)
        except RedisError as exc:
            self._on_error()
            raise _misuse(call_sid, exc) from exc

    async def _apply(self, call_sid: str, op: _Pending) -> None:
        name = self.key(call_sid)
        async with self._redis.pipeline(transaction=True) as pipe:
            if op.delete_first:
                pipe.delete(name)
            if op.fields:
                # redis-py's stubs want a wider key type than dict[str, str].
                pipe.hset(name, mapping=cast("dict[Any, Any]", op.fields))
                pipe.expire(name, self._ttl)
            await pipe.execute()

    # --- the outage queue --------------------------------------------------------
    def _queue(self, call_sid: str, op: _Pending) -> None:
        self._pending.setdefault(call_sid, _Pending()).merge(op)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_until_done(), name="state-store-flusher"
            )
        self._wake.set()

    async def _flush_call(self, call_sid: str) -> bool:
        async with self._call_lock(call_sid):
            return await self._flush_locked(call_sid)

    async def _flush_locked(self, call_sid: str) -> bool:
        """Try to land one call's queued writes now; False while Redis is still away."""
        op = self._pending.pop(call_sid, None)
        if op is None:
            return True
        self._inflight.add(call_sid)
        try:
            await self._apply(call_sid, op)
        except _TRANSIENT:
            self._on_error()
            newer = self._pending.pop(call_sid, None)
            if newer is not None:
                op.merge(newer)
            self._pending[call_sid] = op
            return False
        except RedisError:
            self._on_error()
            # Not an outage (e.g. the key holds another type): retrying cannot help.
            log.exception("state.writes_dropped", call_sid=call_sid, fields=sorted(op.fields))
        finally:
            self._inflight.discard(call_sid)
        return True

    async def _flush_until_done(self) -> None:
        try:
            await self._flush_with_backoff()
        except Exception:
            # A bug here would otherwise vanish with the background task.
            log.exception("state.flusher_failed", calls=sorted(self._pending))
            raise

    async def _flush_with_backoff(self) -> None:
        delay, began = 0.05, time.monotonic()
        while self._pending:
            for call_sid in list(self._pending):
                if not await self._flush_call(call_sid):
                    break
            else:
                continue  # all landed; more may have been queued meanwhile
            if time.monotonic() - began > self._retry_for:
                lost = {sid: len(op.fields) for sid, op in self._pending.items()}
                log.error("state.writes_dropped", calls=lost, retried_for_s=self._retry_for)
                self._pending.clear()
                return
            self._wake.clear()
            # Back off, but wake early when a new write arrives (it may succeed now).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(delay * 2, self._max_backoff)
        log.info("state.flushed", outage_s=round(time.monotonic() - began, 3))

    # --- the local cache ---------------------------------------------------------
    def _remember(self, call_sid: str, raw: Mapping[str, str], *, replace: bool = False) -> None:
        """Keep the last values seen per call (LRU-bounded) for reads during an outage."""
        current = {} if replace else self._cache.get(call_sid, {})
        self._cache[call_sid] = {**current, **raw}
        self._cache.move_to_end(call_sid)
        while len(self._cache) > self._cache_calls:
            self._cache.popitem(last=False)

    def _call_lock(self, call_sid: str) -> asyncio.Lock:
        return self._locks.setdefault(call_sid, asyncio.Lock())

    # --- lifecycle ---------------------------------------------------------------
    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            self._on_error()
            return False

    async def flush(self, within: float) -> bool:
        """Wait up to `within` s for queued writes to land; True when none are left."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=within)
        return not self._pending

    async def aclose(self, *, flush_timeout: float = 2.0) -> None:
        if self._pending and not await self.flush(flush_timeout):
            log.error("state.unflushed_at_close", calls=sorted(self._pending))
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._redis.aclose()


def make_state_store(
    settings: Settings, *, on_redis_error: Callable[[], None] = lambda: None
) -> StateStore:
    """Redis when `REDIS_URL` is set, else memory (state then lives and dies with the process)."""
    if settings.redis_url:
        return RedisStateStore(
            settings.redis_url, settings.state_ttl_seconds, on_error=on_redis_error
        )
    return MemoryStateStore(ttl_seconds=settings.state_ttl_seconds)
