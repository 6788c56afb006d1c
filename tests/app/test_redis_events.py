"""Live call events across two instances through a real Redis (app/redis_events.py).

Each "instance" is a `RedisBus` around its own in-process console bus, as two servers
have; they share nothing but Redis. A call running on A is listed, followed (history
and new events) and listened to on B; when A goes silent its calls end on B.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.redis_events import RedisBus
from tests.ops.process import eventually

events = pytest.importorskip("app.console.events", reason="the console's event bus")
pytestmark = pytest.mark.redis


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    async def holds() -> bool:
        return check()

    await eventually(holds, seconds)


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    prefix = f"voicebot-test-{uuid.uuid4().hex[:12]}:events"
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    buses = [
        RedisBus(c, events.MemoryBus(), prefix=prefix, heartbeat_s=0.2, lost_after_s=1.5)
        for c in clients
    ]
    for bus in buses:
        await bus.start()
    await asyncio.sleep(0.3)  # both subscribed before anything is published
    yield buses[0], buses[1]
    for bus in buses:
        await bus.aclose()
    for client in clients:
        await client.aclose()


def sid() -> str:
    return "CA" + uuid.uuid4().hex


async def next_event(watcher: Any, seconds: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        event: dict[str, Any] = await watcher.get()
        return event


async def test_a_call_on_one_instance_is_listed_and_followed_on_the_other(
    pair: tuple[RedisBus, RedisBus],
) -> None:
    a, b = pair
    call = sid()
    with b.subscribe(events.ALL_CALLS) as everything:
        a.publish(call, {"type": "call.started", "call": {"call_sid": call, "from": "+1555"}})
        started = await next_event(everything)
        assert started["type"] == "call.started" and started["call"]["call_sid"] == call
    assert [c["call_sid"] for c in b.active()] == [call]
    a.publish(call, {"type": "transcript", "at_s": 0.5, "side": "caller", "text": "hello"})
    await until(lambda: len(b.recent(call)) == 1)  # history for a watcher joining mid-call
    assert b.recent(call)[0]["text"] == "hello"
    with b.subscribe(call) as watcher:
        a.publish(call, {"type": "transcript", "at_s": 1.0, "side": "agent", "text": "hi"})
        a.publish(call, {"type": "call.updated", "call_sid": call, "call": {"turns": 2}})
        assert (await next_event(watcher))["text"] == "hi"
        assert (await next_event(watcher))["call"] == {"turns": 2}
        assert b.active()[0]["turns"] == 2
        a.publish(call, {"type": "call.ended", "call_sid": call, "end_reason": "agent_hangup"})
        assert (await next_event(watcher))["end_reason"] == "agent_hangup"
    assert b.active() == [] and a.active() == []


async def test_listen_in_audio_crosses_only_while_someone_listens(
    pair: tuple[RedisBus, RedisBus],
) -> None:
    a, b = pair
    call = sid()
    audio = call + "/audio"
    a.publish(call, {"type": "call.started", "call": {"call_sid": call}})
    await until(lambda: bool(b.active()))
    assert not a.watched(audio)  # nobody listens: the call publishes no audio at all
    pcm = bytes(range(256)) * 2
    with b.subscribe(audio) as listener:
        await until(lambda: a.watched(audio))
        a.publish(audio, {"type": "audio", "side": "caller", "at": 160, "pcm": pcm})
        a.publish(audio, {"type": "audio.cleared", "at": 320})
        first = await next_event(listener)
        assert (first["side"], first["at"], first["pcm"]) == ("caller", 160, pcm)
        assert (await next_event(listener)) == {"type": "audio.cleared", "at": 320}
    await until(lambda: not a.watched(audio))


async def test_calls_of_an_instance_that_died_end_everywhere_else(
    pair: tuple[RedisBus, RedisBus],
) -> None:
    a, b = pair
    call = sid()
    a.publish(call, {"type": "call.started", "call": {"call_sid": call}})
    await until(lambda: bool(b.active()))
    with b.subscribe(call) as watcher:
        await a.aclose()  # killed: no call.ended, no more heartbeats
        ended = await next_event(watcher, seconds=10)
    assert ended == {"type": "call.ended", "call_sid": call, "end_reason": "instance_lost"}
    assert b.active() == []


async def test_an_instance_that_starts_late_learns_the_calls_in_progress(
    redis_url: str, pair: tuple[RedisBus, RedisBus]
) -> None:
    a, _ = pair
    call = sid()
    a.publish(call, {"type": "call.started", "call": {"call_sid": call, "from": "+1555"}})
    client = aioredis.Redis.from_url(redis_url)
    late = RedisBus(client, events.MemoryBus(), prefix=a.prefix)
    try:
        await late.start()
        await until(lambda: bool(late.active()), seconds=5)
        assert late.active()[0]["from"] == "+1555"
    finally:
        await late.aclose()
        await client.aclose()
