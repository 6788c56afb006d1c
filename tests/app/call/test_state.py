"""State stores: the contract on both, and real-Redis behaviour (TTL, races, outages)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aredis
from structlog.testing import capture_logs

from app.call.state import MemoryStateStore, RedisStateStore, make_state_store
from app.errors import StateStoreError
from app.settings import Settings
from tests.support.redis_server import RedisServer
from tests.tools.fakes import make_context
from tools import ToolContext, ToolDispatcher, ToolRegistry, tool
from tools.context import StateStore

TTL = 600


def sid() -> str:
    return f"CA{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        s: StateStore = MemoryStateStore(ttl_seconds=TTL)
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisStateStore(url, TTL, prefix=request.getfixturevalue("redis_prefix"))
    yield s
    await s.aclose()


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore(redis_url, TTL, prefix=redis_prefix)
    yield s
    await s.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


# --- the contract, on both stores -------------------------------------------------


async def test_roundtrip(store: StateStore) -> None:
    call = sid()
    assert await store.load(call) == {}
    await store.set_fields(call, {"n": 1, "items": [1, "two", {"x": None}], "ok": True})
    await store.set_fields(call, {"n": 2})
    assert await store.load(call) == {"n": 2, "items": [1, "two", {"x": None}], "ok": True}


async def test_update_uses_default_and_returns_new_value(store: StateStore) -> None:
    call = sid()
    assert await store.update_field(call, "n", lambda v: v + 1, default=0) == 1
    assert await store.update_field(call, "n", lambda v: v + 1, default=0) == 2
    assert (await store.load(call))["n"] == 2


async def test_seed_keeps_existing_fields(store: StateStore) -> None:
    call = sid()
    await store.seed(call, {"from": "+1555", "lang": "en"})
    await store.set_fields(call, {"lang": "fr"})
    await store.seed(call, {"from": "+1999", "lang": "de"})  # a reconnect re-seeds
    assert await store.load(call) == {"from": "+1555", "lang": "fr"}


async def test_delete(store: StateStore) -> None:
    call = sid()
    await store.set_fields(call, {"a": 1})
    await store.delete(call)
    assert await store.load(call) == {}


async def test_values_are_copies(store: StateStore) -> None:
    call = sid()
    items = [1]
    await store.set_fields(call, {"items": items})
    items.append(2)
    loaded = await store.load(call)
    loaded["items"].append(3)
    assert (await store.load(call))["items"] == [1]


@pytest.mark.parametrize(
    "bad",
    [
        lambda s, c: s.set_fields(c, {"x": object()}),
        lambda s, c: s.set_fields(c, {"x": float("nan")}),
        lambda s, c: s.set_fields("", {"x": 1}),
        lambda s, c: s.update_field(c, "x", lambda v: {1, 2}),
        lambda s, c: s.set_fields(c, {"": 1}),
    ],
)
async def test_misuse_raises_state_store_error(
    store: StateStore, bad: Callable[[StateStore, str], Any]
) -> None:
    with pytest.raises(StateStoreError):
        await bad(store, sid())


async def test_ping(store: StateStore) -> None:
    assert await store.ping() is True


async def test_memory_store_expires_calls() -> None:
    store = MemoryStateStore(ttl_seconds=0.05)
    call = sid()
    await store.set_fields(call, {"a": 1})
    await asyncio.sleep(0.1)
    assert await store.load(call) == {}


async def test_concurrent_updates_are_atomic_in_memory() -> None:
    store, call = MemoryStateStore(), sid()
    await asyncio.gather(*(store.update_field(call, "n", lambda v: v + 1, default=0)
                           for _ in range(50)))  # fmt: skip
    assert (await store.load(call))["n"] == 50


def test_factory_picks_the_store() -> None:
    assert isinstance(make_state_store(Settings(redis_url=None)), MemoryStateStore)
    store = make_state_store(Settings(redis_url="redis://127.0.0.1:1/0", state_ttl_seconds=5))
    assert isinstance(store, RedisStateStore)


# --- real Redis ---------------------------------------------------------------------


@pytest.mark.redis
async def test_key_scheme_and_ttl_refreshed(
    redis_store: RedisStateStore, raw: aredis.Redis, redis_prefix: str
) -> None:
    call = sid()
    await redis_store.seed(call, {"from": "+1555"})
    key = f"{redis_prefix}:call:{call}:state"
    assert redis_store.key(call) == key
    assert await raw.hgetall(key) == {"from": '"+1555"'}
    assert 0 < await raw.ttl(key) <= TTL
    await raw.expire(key, 5)
    await redis_store.set_fields(call, {"n": 1})
    assert await raw.ttl(key) > 5  # every write refreshes the TTL
    await raw.expire(key, 5)
    await redis_store.update_field(call, "n", lambda v: v + 1)
    assert await raw.ttl(key) > 5


@pytest.mark.redis
async def test_fifty_concurrent_increments_from_two_instances(
    redis_url: str, redis_prefix: str
) -> None:
    # Two store objects stand for two service instances: only WATCH keeps them honest.
    a = RedisStateStore(redis_url, TTL, prefix=redis_prefix)
    b = RedisStateStore(redis_url, TTL, prefix=redis_prefix)
    call = sid()
    ctx_a, ctx_b = make_context(a, call), make_context(b, call)
    try:
        results = await asyncio.gather(
            *(
                (ctx_a if i % 2 else ctx_b).state.update("n", lambda v: v + 1, default=0)
                for i in range(50)
            )
        )
        assert sorted(results) == list(range(1, 51))  # every increment saw a distinct value
        assert await ctx_a.state.get("n") == 50
        assert await ctx_b.state.get("n") == 50
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.redis
async def test_another_instance_sees_the_state(redis_url: str, redis_prefix: str) -> None:
    call = sid()
    first = RedisStateStore(redis_url, TTL, prefix=redis_prefix)
    await make_context(first, call).state.set("cart", ["tea"])
    await first.aclose()  # this instance goes away
    second = RedisStateStore(redis_url, TTL, prefix=redis_prefix)
    try:
        ctx = make_context(second, call)
        assert await ctx.state.get("cart") == ["tea"]
        assert await ctx.state.snapshot() == {"cart": ["tea"]}
    finally:
        await second.aclose()


@pytest.mark.redis
async def test_non_transient_redis_error_is_state_store_error(
    redis_store: RedisStateStore, raw: aredis.Redis
) -> None:
    call = sid()
    await raw.set(redis_store.key(call), "a plain string, not a hash")
    with pytest.raises(StateStoreError, match="refused"):
        await redis_store.load(call)
    with pytest.raises(StateStoreError):
        await redis_store.set_fields(call, {"a": 1})


# --- a private Redis we can kill and restart ---------------------------------------


async def read_back(url: str, key: str) -> dict[str, str]:
    client = aredis.Redis.from_url(url, decode_responses=True)
    try:
        return await client.hgetall(key)  # type: ignore[return-value]
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_state_survives_a_redis_restart(private_redis: RedisServer) -> None:
    store = RedisStateStore(private_redis.url, TTL)
    call = sid()
    try:
        await store.set_fields(call, {"n": 1})
        private_redis.restart()  # AOF on: the data is on disk
        # The same store object reconnects by itself.
        assert await store.update_field(call, "n", lambda v: v + 1) == 2
        assert await read_back(private_redis.url, store.key(call)) == {"n": "2"}
    finally:
        await store.aclose()


@tool
async def remember(ctx: ToolContext, item: str) -> int:
    """Add an item to the caller's list; returns how many there are."""
    items = await ctx.state.update("items", lambda v: [*v, item], default=[])
    await ctx.state.set("last", item)
    return len(items)


@tool
async def recall(ctx: ToolContext) -> dict[str, Any]:
    """Everything remembered on this call."""
    return await ctx.state.snapshot()


@pytest.mark.redis
async def test_redis_killed_mid_call(private_redis: RedisServer) -> None:
    store = RedisStateStore(private_redis.url, TTL, max_backoff=0.2)
    call = sid()
    dispatcher = ToolDispatcher(
        ToolRegistry([remember, recall]), make_context(store, call), timeout=5.0
    )

    async def run(name: str, args: dict[str, Any]) -> Any:
        dispatcher.start(uuid.uuid4().hex, name, args)
        result = await asyncio.wait_for(dispatcher.results.get(), 5)
        assert result.ok, result.response  # the tool call never fails for an outage
        return result.response["result"]

    try:
        await store.seed(call, {"from": "+1555"})
        assert await run("remember", {"item": "tea"}) == 1

        private_redis.stop(kill=True)
        with capture_logs() as logs:
            assert await run("remember", {"item": "milk"}) == 2  # from the cached list
            assert await run("remember", {"item": "jam"}) == 3
            snapshot = await run("recall", {})  # reads fall back to last known values
        assert snapshot == {"from": "+1555", "items": ["tea", "milk", "jam"], "last": "jam"}
        assert {e["event"] for e in logs} >= {"state.write_queued", "state.read_fallback"}
        assert store.pending_calls == {call}
        assert await store.ping() is False

        private_redis.start()  # same port, same AOF: "tea" is still there
        assert await store.flush(10.0)
        stored = await read_back(private_redis.url, store.key(call))
        assert stored == {
            "from": '"+1555"',
            "items": '["tea","milk","jam"]',
            "last": '"jam"',
        }
        assert await run("remember", {"item": "bread"}) == 4  # atomic path again
    finally:
        await dispatcher.aclose()
        await store.aclose()


@pytest.mark.redis
async def test_writes_after_an_outage_keep_their_order(private_redis: RedisServer) -> None:
    store = RedisStateStore(private_redis.url, TTL, max_backoff=0.1)
    call = sid()
    try:
        private_redis.stop(kill=True)
        await store.set_fields(call, {"step": 1})
        await store.delete(call)
        await store.set_fields(call, {"step": 3, "other": "x"})
        private_redis.start()
        # A write arriving while older ones are still queued lands after them.
        await store.set_fields(call, {"step": 4})
        assert await store.flush(10.0)
        assert await store.load(call) == {"step": 4, "other": "x"}
    finally:
        await store.aclose()


@pytest.mark.redis
async def test_retrying_is_bounded(private_redis: RedisServer) -> None:
    store = RedisStateStore(private_redis.url, TTL, retry_for=0.3, max_backoff=0.05)
    call = sid()
    try:
        private_redis.stop(kill=True)
        with capture_logs() as logs:
            await store.set_fields(call, {"a": 1})
            assert await store.flush(5.0)  # gave up: nothing left queued
        dropped = [e for e in logs if e["event"] == "state.writes_dropped"]
        assert dropped and dropped[0]["log_level"] == "error"
        assert dropped[0]["calls"] == {call: 1}
        assert await store.load(call) == {"a": 1}  # still readable from the cache
    finally:
        await store.aclose()
