"""Capacity limits: how many calls this instance, and all instances together, may take.

The voice webhook asks `Capacity.admit` before it hands out a stream. Over a limit, the
caller hears a short polite message (or is dialled through to `OVERFLOW_NUMBER`) instead
of being connected to a stream that could not be served.

- Per instance (`MAX_ACTIVE_CALLS`): calls bridged here plus calls admitted here in the
  last few seconds whose stream has not started yet (the stream follows the webhook by
  about a second, possibly to another instance). `/readyz` reports not-ready at the cap so
  a balancer that polls it prefers other instances.
- Across instances (`GLOBAL_MAX_ACTIVE_CALLS`, needs `REDIS_URL`): one Redis sorted set,
  member = call sid, score = when the entry expires (Redis' own clock, so instances' clocks
  do not matter). The webhook adds a call if fewer than the cap are live, atomically (Lua).
  Every instance re-arms the entries of the calls it is bridging every
  `CAPACITY_HEARTBEAT_SECONDS`, and removes a call's entry when it ends (`call_ended`;
  the heartbeat catches any it missed). An instance that dies stops
  re-arming: its calls leave the count within `GLOBAL_ENTRY_TTL_S`. Nothing to clean up.

If Redis does not answer, the global cap is not enforced for that call (logged and
counted): a caller turned away because Redis blinked is worse than a call over a quota
the per-instance cap still bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

from telephony.twiml import dial_twiml, say_and_hangup_twiml

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("voicebot.capacity")

Scope = Literal["instance", "global"]
GLOBAL_KEY = "voicebot:capacity:calls"
# A webhook-admitted call counts on its instance this long before its stream starts.
PENDING_S = 10.0
# A global entry lives this long unless re-armed: covers webhook -> stream start, and
# several missed heartbeats of a live instance; bounds how long a dead one's calls count.
GLOBAL_ENTRY_TTL_S = 30.0
REDIS_TIMEOUT_S = 1.0  # the webhook must answer Twilio quickly, Redis or not
DEFAULT_BUSY_MESSAGE = (
    "Sorry, all our agents are busy right now. Please call again in a few minutes."
)

# KEYS[1] the set; ARGV: call sid, cap, entry ttl (s). 1 = admitted, 0 = full.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[3])
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])  -- a webhook retried by Twilio
if not known and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return 1
"""
# KEYS[1] the set; ARGV[1] entry ttl (s), ARGV[2..] call sids to re-arm. Returns the count.
_REARM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000)) end
return redis.call('ZCARD', KEYS[1])
"""


class CapacityMetrics:
    """Refusals, the caps, and the global count as Redis last reported it."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        ns = "voicebot"
        self.refused = Counter(
            "calls_refused",
            "Calls answered with the busy message (or overflow dial), by the cap hit.",
            ["scope"],
            namespace=ns,
            registry=r,
        )
        self.cap = Gauge(
            "call_capacity", "The call cap by scope (0 = no cap).", ["scope"], namespace=ns,
            registry=r,
        )  # fmt: skip
        self.global_active = Gauge(
            "global_active_calls",
            "Calls admitted across all instances (the Redis count, at the last heartbeat).",
            namespace=ns,
            registry=r,
        )
        self.errors = Counter(
            "capacity_errors",
            "Global cap checks that could not reach Redis (the call was admitted).",
            namespace=ns,
            registry=r,
        )
        for scope in ("instance", "global"):
            self.refused.labels(scope)


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Scope
    twiml: str


class GlobalSlots:
    """The cross-instance count in Redis (see the module's docstring)."""

    def __init__(
        self,
        redis: Redis,
        cap: int,
        *,
        key: str = GLOBAL_KEY,
        entry_ttl: float = GLOBAL_ENTRY_TTL_S,
    ) -> None:
        self.cap = cap
        self.entry_ttl = entry_ttl
        self._redis = redis
        self._key = key
        self._admit = redis.register_script(_ADMIT)
        self._rearm = redis.register_script(_REARM)

    async def admit(self, call_sid: str) -> bool:
        result = await self._admit(keys=[self._key], args=[call_sid, self.cap, self.entry_ttl])
        return bool(int(result))

    async def rearm(self, call_sids: Collection[str]) -> int:
        """Re-arm these calls' entries; the live count."""
        return int(await self._rearm(keys=[self._key], args=[self.entry_ttl, *call_sids]))

    async def release(self, call_sids: Collection[str]) -> None:
        if call_sids:
            await self._redis.zrem(self._key, *call_sids)


class Capacity:
    """Admission at the webhook, the readiness signal, and the global heartbeat."""

    def __init__(
        self,
        *,
        max_calls: int = 0,
        global_slots: GlobalSlots | None = None,
        busy_message: str = DEFAULT_BUSY_MESSAGE,
        overflow_number: str | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_calls = max_calls
        self.global_slots = global_slots
        self.metrics = CapacityMetrics(registry)
        self.metrics.cap.labels("instance").set(max_calls)
        self.metrics.cap.labels("global").set(global_slots.cap if global_slots else 0)
        self._busy_message = busy_message
        self._overflow = overflow_number or None
        self._clock = clock
        self._pending: dict[str, float] = {}  # call sid -> when its reservation lapses
        self._armed: set[str] = set()  # calls whose global entry this instance re-arms
        self._releasing: set[asyncio.Task[None]] = set()

    def in_use(self, active: Collection[str]) -> int:
        """Calls bridged here plus calls admitted here whose stream has not started."""
        now = self._clock()
        for sid in [s for s, until in self._pending.items() if until <= now or s in active]:
            del self._pending[sid]
        return len(active) + len(self._pending)

    def full(self, active: Collection[str]) -> bool:
        return self.max_calls > 0 and self.in_use(active) >= self.max_calls

    async def admit(self, call_sid: str, active: Collection[str]) -> Refusal | None:
        """None when the call may be connected (it is then counted); else the refusal."""
        if self.full(active):
            return self._refuse("instance")
        if self.global_slots is not None and not await self._admit_globally(call_sid):
            return self._refuse("global")
        if self.max_calls > 0:
            self._pending[call_sid] = self._clock() + PENDING_S
        return None

    def busy_twiml(self) -> str:
        if self._overflow:
            return dial_twiml(self._overflow)
        return say_and_hangup_twiml(self._busy_message)

    async def heartbeat(self, active: Collection[str]) -> None:
        """Re-arm the global entries of calls bridged here; drop those that ended."""
        if self.global_slots is None:
            return
        current = set(active)
        ended = self._armed - current
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S * 2):
                await self.global_slots.release(ended)
                count = await self.global_slots.rearm(current)
        except (RedisError, OSError, TimeoutError) as exc:
            # Entries expire by themselves; the next beat tries again.
            log.warning("capacity.heartbeat_failed", error=str(exc)[:200])
            return
        self._armed = current
        self.metrics.global_active.set(count)

    def call_ended(self, call_sid: str) -> asyncio.Task[None] | None:
        """Give a finished call's global slot back now (in the background: the task)."""
        self._pending.pop(call_sid, None)
        if self.global_slots is None:
            return None
        self._armed.discard(call_sid)
        task = asyncio.get_running_loop().create_task(self._release(call_sid))
        self._releasing.add(task)  # held until done: a bare task may be garbage-collected
        task.add_done_callback(self._releasing.discard)
        return task

    async def _release(self, call_sid: str) -> None:
        assert self.global_slots is not None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S * 2):
                await self.global_slots.release([call_sid])
        except (RedisError, OSError, TimeoutError) as exc:  # the entry expires by itself
            log.warning("capacity.release_failed", call_sid=call_sid, error=str(exc)[:200])

    async def run_heartbeat(self, active: Callable[[], Collection[str]], every_s: float) -> None:
        while True:
            await self.heartbeat(active())
            await asyncio.sleep(every_s)

    async def _admit_globally(self, call_sid: str) -> bool:
        assert self.global_slots is not None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                return await self.global_slots.admit(call_sid)
        except (RedisError, OSError, TimeoutError) as exc:
            self.metrics.errors.inc()
            log.warning("capacity.global_check_failed", call_sid=call_sid, error=str(exc)[:200])
            return True

    def _refuse(self, scope: Scope) -> Refusal:
        self.metrics.refused.labels(scope).inc()
        return Refusal(scope, self.busy_twiml())
