"""Live call events across instances: the console's event bus, carried through Redis.

`RedisBus` stands in for the console's in-process `MemoryBus` (app/console/events.py)
when `REDIS_URL` is set, with the same five methods, and keeps one of them inside as the
local part: local watchers, and a mirror of every instance's calls. A console served by
any instance then lists every call in progress and follows any of them.

    publish   the local bus first (local watchers see it at once), then a bounded
              outbox that one task drains to Redis PUBLISH: never awaits, never raises;
              a full outbox (Redis away) drops and counts, the call goes on
    receive   one pub/sub connection: every call's events except audio (so every
              mirror has each call's history for a watcher who joins mid-call), and a
              call's listen-in audio only while a watcher here listens to it
    audio     published to Redis only while some other instance listens (PUBSUB NUMSUB,
              refreshed twice a second): 50 frames a second per call cost nothing unwatched
    liveness  each instance announces its calls every HEARTBEAT_S; a call whose instance
              went silent for LOST_AFTER_S is ended in every mirror ("instance_lost"),
              and an instance that starts late learns the calls in progress from them

Redis channels (`prefix` defaults to "voicebot:events"):
    {prefix}:call:{call_sid}     a call's events, lifecycle included (JSON)
    {prefix}:audio:{call_sid}    its listen-in audio (JSON, PCM as base64)
    {prefix}:instances           heartbeats: {"instance", "calls": {sid: summary}}
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

log = structlog.get_logger("voicebot.events")

Event = dict[str, Any]
AUDIO_SUFFIX = "/audio"  # app.console.watch.audio_channel: "{call_sid}/audio"
LIFECYCLE_START, LIFECYCLE_END = "call.started", "call.ended"
HEARTBEAT_S = 2.0
LOST_AFTER_S = 10.0
INTEREST_S = 0.5
OUTBOX = 5000  # events waiting for Redis; beyond it they are dropped and counted
RETRY_S = 1.0


class LocalBus(Protocol):
    """The console's in-process bus (`app.console.events.MemoryBus`)."""

    def publish(self, call_sid: str, event: Event) -> None: ...

    def watched(self, call_sid: str) -> bool: ...

    def subscribe(
        self, channel: str, maxsize: int = ...
    ) -> contextlib.AbstractContextManager[Any]: ...

    def active(self) -> list[Event]: ...

    def recent(self, call_sid: str) -> list[Event]: ...


class RedisBus:
    """The console's `EventBus`, shared by every instance through Redis."""

    def __init__(
        self,
        redis: Redis,
        local: LocalBus,
        *,
        prefix: str = "voicebot:events",
        instance: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        lost_after_s: float = LOST_AFTER_S,
    ) -> None:
        self.local = local
        self.instance = instance or uuid.uuid4().hex[:12]
        self.dropped = 0  # events that never reached Redis (outbox full)
        self._redis = redis
        self.prefix = prefix
        self._heartbeat_s = heartbeat_s
        self._lost_after_s = lost_after_s
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._mine: dict[str, Event] = {}  # calls running here: their summaries
        self._owner: dict[str, str] = {}  # every call in the mirror -> its instance
        self._seen: dict[str, float] = {}  # instance -> when last heard (monotonic)
        self._heard_elsewhere: set[str] = set()  # audio channels someone else listens to
        self._listening: dict[str, int] = {}  # audio channels watched here (remote calls)
        self._changes: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # --- EventBus ------------------------------------------------------------------
    def publish(self, call_sid: str, event: Event) -> None:
        self.local.publish(call_sid, event)
        if call_sid.endswith(AUDIO_SUFFIX):
            if call_sid in self._heard_elsewhere:
                sid = call_sid.removesuffix(AUDIO_SUFFIX)
                self._send(f"{self.prefix}:audio:{sid}", _encode_audio(self.instance, event))
            return
        kind = event.get("type")
        if kind == LIFECYCLE_START:
            self._mine[call_sid] = dict(event.get("call", {}))
            self._owner[call_sid] = self.instance
        elif kind == LIFECYCLE_END:
            self._mine.pop(call_sid, None)
            self._owner.pop(call_sid, None)
        elif kind == "call.updated" and call_sid in self._mine:
            self._mine[call_sid].update(event.get("call", {}))
        payload = orjson.dumps({"instance": self.instance, "event": event}, default=str)
        self._send(f"{self.prefix}:call:{call_sid}", payload)

    def watched(self, call_sid: str) -> bool:
        return self.local.watched(call_sid) or call_sid in self._heard_elsewhere

    @contextlib.contextmanager
    def subscribe(self, channel: str, maxsize: int = 256) -> Iterator[Any]:
        remote_audio = channel.endswith(AUDIO_SUFFIX) and (
            self._owner.get(channel.removesuffix(AUDIO_SUFFIX)) != self.instance
        )
        if remote_audio:
            self._listen(channel, +1)
        try:
            with self.local.subscribe(channel, maxsize) as watcher:
                yield watcher
        finally:
            if remote_audio:
                self._listen(channel, -1)

    def active(self) -> list[Event]:
        return self.local.active()

    def recent(self, call_sid: str) -> list[Event]:
        return self.local.recent(call_sid)

    # --- running -------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for job in (self._publisher, self._receiver, self._heartbeat, self._interest):
            self._tasks.append(loop.create_task(job(), name=f"events-{job.__name__}"))

    async def aclose(self) -> None:
        # A flag as well as cancel(): redis-py can swallow a cancellation that lands
        # while it returns a connection to its pool, and the loop would go on.
        self._closing = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            if stuck:
                log.warning("events.close_timeout", tasks=sorted(t.get_name() for t in stuck))
        self._tasks.clear()

    def _send(self, channel: str, payload: bytes) -> None:
        if len(self._outbox) >= OUTBOX:
            self.dropped += 1
            return
        self._outbox.append((channel, payload))
        self._wake.set()

    def _listen(self, channel: str, delta: int) -> None:
        count = self._listening.get(channel, 0) + delta
        if count > 0:
            self._listening[channel] = count
            if count == 1 and delta > 0:
                self._changes.put_nowait((True, channel))
        else:
            self._listening.pop(channel, None)
            self._changes.put_nowait((False, channel))

    async def _publisher(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and not self._closing:
                batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 200))]
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    _raise_if_cancelled()
                    self.dropped += len(batch)
                    log.warning("events.publish_failed", events=len(batch), error=str(exc)[:200])
                    await asyncio.sleep(RETRY_S)

    async def _receiver(self) -> None:
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{self.prefix}:call:*")
                await pubsub.subscribe(f"{self.prefix}:instances")
                for channel in self._listening:
                    await pubsub.subscribe(self._audio_key(channel))
                await self._receive(pubsub)
            except (RedisError, OSError) as exc:
                _raise_if_cancelled()
                log.warning("events.receive_failed", error=str(exc)[:200])
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _receive(self, pubsub: PubSub) -> None:
        while not self._closing:
            while not self._changes.empty():
                add, channel = self._changes.get_nowait()
                key = self._audio_key(channel)
                await (pubsub.subscribe(key) if add else pubsub.unsubscribe(key))
            message = await pubsub.get_message(timeout=0.2)
            if message is not None and message.get("type") in ("message", "pmessage"):
                self._deliver(_text(message["channel"]), message["data"])

    def _deliver(self, channel: str, data: bytes) -> None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("events.bad_message", channel=channel[:200])
            return
        origin = str(body.get("instance", ""))
        if origin == self.instance:
            return  # our own, already delivered locally
        self._seen[origin] = time.monotonic()
        kind, _, rest = channel.removeprefix(self.prefix + ":").partition(":")
        if kind == "instances":
            self._adopt(origin, body.get("calls") or {})
        elif kind == "call":
            event = body.get("event") or {}
            if event.get("type") == LIFECYCLE_START:
                self._owner[rest] = origin
            elif event.get("type") == LIFECYCLE_END:
                self._owner.pop(rest, None)
            self.local.publish(rest, event)
        elif kind == "audio":
            self.local.publish(rest + AUDIO_SUFFIX, _decode_audio(body.get("event") or {}))

    def _adopt(self, origin: str, calls: dict[str, Event]) -> None:
        """A heartbeat: calls we have not seen start (we started late) join the mirror."""
        for sid, summary in calls.items():
            if sid not in self._owner:
                self._owner[sid] = origin
                self.local.publish(sid, {"type": LIFECYCLE_START, "call": summary})

    async def _heartbeat(self) -> None:
        while not self._closing:
            beat = {"instance": self.instance, "calls": self._mine}
            self._send(f"{self.prefix}:instances", orjson.dumps(beat, default=str))
            self._forget_lost()
            await asyncio.sleep(self._heartbeat_s)

    def _forget_lost(self) -> None:
        now = time.monotonic()
        for sid, origin in list(self._owner.items()):
            if origin == self.instance:
                continue
            if now - self._seen.get(origin, now) > self._lost_after_s:
                self._owner.pop(sid, None)
                log.warning("events.instance_lost", instance=origin, call_sid=sid)
                self.local.publish(
                    sid, {"type": LIFECYCLE_END, "call_sid": sid, "end_reason": "instance_lost"}
                )

    async def _interest(self) -> None:
        """Which of our calls' audio someone on another instance listens to."""
        while not self._closing:
            channels = [sid + AUDIO_SUFFIX for sid in self._mine]
            try:
                if channels:
                    keys = [self._audio_key(c) for c in channels]
                    counts = await self._redis.pubsub_numsub(*keys)
                    self._heard_elsewhere = {
                        c for c, (_, n) in zip(channels, counts, strict=True) if int(n) > 0
                    }
                else:
                    self._heard_elsewhere = set()
            except (RedisError, OSError) as exc:
                _raise_if_cancelled()
                log.warning("events.interest_failed", error=str(exc)[:200])
            await asyncio.sleep(INTEREST_S)

    def _audio_key(self, channel: str) -> str:
        return f"{self.prefix}:audio:{channel.removesuffix(AUDIO_SUFFIX)}"


def _raise_if_cancelled() -> None:
    """redis-py may turn a cancellation mid-command into a connection error: undo that."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _encode_audio(instance: str, event: Event) -> bytes:
    wire = dict(event)
    pcm = wire.get("pcm")
    if isinstance(pcm, bytes | bytearray | memoryview):
        wire["pcm"] = base64.b64encode(bytes(pcm)).decode("ascii")
    return orjson.dumps({"instance": instance, "event": wire})


def _decode_audio(event: Event) -> Event:
    if isinstance(event.get("pcm"), str):
        event["pcm"] = base64.b64decode(event["pcm"])
    return event


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
