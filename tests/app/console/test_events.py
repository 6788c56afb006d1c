"""The per-call event bus: publishing never blocks, slow watchers lose events (counted)."""

from __future__ import annotations

from app.console.events import ALL_CALLS, HISTORY, MemoryBus

SID = "CA" + "1" * 32


def test_publish_without_watchers_keeps_only_the_active_list() -> None:
    bus = MemoryBus()
    bus.publish(SID, {"type": "transcript", "text": "hi"})  # no call started: nothing kept
    assert bus.recent(SID) == [] and bus.active() == []
    bus.publish(SID, {"type": "call.started", "call": {"from": "+1555"}})
    bus.publish(SID, {"type": "transcript", "text": "hi"})
    assert bus.active() == [{"call_sid": SID, "from": "+1555"}]
    assert bus.recent(SID) == [{"type": "transcript", "text": "hi"}]
    bus.publish(SID, {"type": "call.ended", "call_sid": SID})
    assert bus.active() == [] and bus.recent(SID) == []
    bus.publish(SID, {"type": "call.updated", "call_sid": SID, "call": {"turns": 3}})
    assert bus.active() == [], "a late update does not resurrect an ended call"


def test_history_is_bounded() -> None:
    bus = MemoryBus()
    bus.publish(SID, {"type": "call.started", "call": {}})
    for i in range(HISTORY + 50):
        bus.publish(SID, {"type": "transcript", "text": str(i)})
    kept = bus.recent(SID)
    assert len(kept) == HISTORY and kept[-1]["text"] == str(HISTORY + 49)


async def test_a_full_watcher_drops_and_counts_while_others_still_receive() -> None:
    bus = MemoryBus()
    with bus.subscribe(SID, maxsize=3) as slow, bus.subscribe(SID, maxsize=100) as fast:
        assert bus.watched(SID)
        for i in range(10):
            bus.publish(SID, {"type": "transcript", "text": str(i)})
        assert slow.dropped == 7 and fast.dropped == 0
        assert [(await slow.get())["text"] for _ in range(3)] == ["0", "1", "2"]
        assert [(await fast.get())["text"] for _ in range(10)][-1] == "9"
    assert not bus.watched(SID) and bus.watchers == {}
    assert bus.dropped_total == 7


async def test_lifecycle_events_reach_the_all_calls_channel_only() -> None:
    bus = MemoryBus()
    with bus.subscribe(ALL_CALLS) as everyone, bus.subscribe(SID) as one:
        bus.publish(SID, {"type": "call.started", "call": {}})
        bus.publish(SID, {"type": "transcript", "text": "hi"})
        bus.publish(SID, {"type": "call.ended", "call_sid": SID})
        assert (await everyone.get())["type"] == "call.started"
        assert (await everyone.get())["type"] == "call.ended"
        assert [(await one.get())["type"] for _ in range(3)] == [
            "call.started", "transcript", "call.ended",
        ]  # fmt: skip
