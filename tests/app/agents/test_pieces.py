"""The small pure pieces of agents: templating, keypad batching, routing, hook outcomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.agents.activity import SpeechTurns
from app.agents.agent import Agent
from app.agents.dtmf import DigitBatcher, keypad_text
from app.agents.hook import CallFacts, load_hook, run_hook
from app.agents.keypad import Keypad
from app.agents.routing import AgentBook
from app.agents.variables import builtin_variables, render
from app.errors import ConfigError, LiveClosedError
from tests.app.agents import sample_hooks
from tools.registry import ToolRegistry


def test_render_replaces_known_names_only() -> None:
    variables = {"name": "Ada", "n": 3}
    assert render("Hi {name}, {n} items, {unknown}.", variables) == "Hi Ada, 3 items, {unknown}."
    assert render("{{literal}} and {name}", variables) == "{literal} and Ada"
    # No attribute access or format specs: those are left as written.
    assert render("{name.__class__} {name:>10}", variables) == "{name.__class__} {name:>10}"


def test_builtin_variables_use_the_agents_time_zone() -> None:
    now = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    v = builtin_variables(
        call_sid="CA1", from_number="+1555", to_number="+1666", direction="inbound",
        agent="sales", timezone="Asia/Tokyo", now=now,
    )  # fmt: skip
    assert (v["local_date"], v["local_time"]) == ("Thursday 03 December 2026", "08:30")
    assert v["local_datetime"] == "2026-12-03T08:30+09:00"
    assert (v["caller_number"], v["called_number"], v["agent"]) == ("+1555", "+1666", "sales")


def test_digits_close_together_are_one_batch() -> None:
    batch = DigitBatcher(gap_s=1.0)
    assert batch.deadline() is None and batch.take_due(0.0) is None
    batch.press("1", 0.0)
    batch.press("2", 0.6)
    assert batch.take_due(1.2) is None  # 0.6 s since the last key
    batch.press("#", 1.5)
    assert batch.deadline() == 2.5
    assert batch.take_due(2.5) == "12#"
    assert batch.take_due(9.0) is None
    with pytest.raises(ValueError, match="not a DTMF digit"):
        batch.press("x", 3.0)
    assert keypad_text("5") == "The caller pressed 5 on the keypad."
    assert keypad_text("12#") == "The caller pressed 1, 2, # on the keypad."


class FakeLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, **kw: object) -> None:
        self.lines.append((event, kw))

    warning = info


async def test_keypad_sends_batches_and_survives_a_closed_link() -> None:
    sent: list[str] = []

    async def send(text: str) -> None:
        if "9" in text:
            raise LiveClosedError("gone")
        sent.append(text)

    log = FakeLog()
    keypad = Keypad(send, log, gap_s=0.05)
    keypad.press("4")
    keypad.press("2")
    await asyncio.sleep(0.2)
    keypad.press("9")
    keypad.press("?")  # not a digit: logged, ignored
    await asyncio.sleep(0.2)
    await keypad.aclose()
    assert sent == ["The caller pressed 4, 2 on the keypad."]
    events = [e for e, _ in log.lines]
    assert "caller.dtmf_ignored" in events and "caller.dtmf_not_sent" in events


def agent(name: str, *numbers: str) -> Agent:
    return Agent(name, "p", None, "Puck", "m", ToolRegistry(), numbers=numbers)


def test_routing_inbound_outbound_and_asked_for() -> None:
    book = AgentBook(
        {"a": agent("a", "+15550100001"), "b": agent("b", "+15550100002"), "d": agent("d")}, "d"
    )
    pick = book.for_call
    assert pick(to="+15550100002", from_="+1999", direction="inbound", requested=None).name == "b"
    assert (
        pick(to="+1999", from_="+15550100001", direction="outbound-api", requested=None).name == "a"
    )
    assert pick(to="+1999", from_="+1888", direction="inbound", requested=None).name == "d"
    assert pick(to="+15550100002", from_="", direction="inbound", requested="a").name == "a"
    assert pick(to="+15550100002", from_="", direction="inbound", requested="zz").name == "b"
    with pytest.raises(ValueError):
        AgentBook({"a": agent("a")}, "nope")


FACTS = CallFacts("CA1", "+1555", "+1666", "inbound", "sales", {"k": "v"})


async def test_hook_outcomes() -> None:
    ok = await run_hook(load_hook("tests.app.agents.sample_hooks:enrich"), FACTS, 1.0)
    assert ok.status == "ok" and ok.variables == {"customer_name": "Ada", "tier": "gold"}
    assert "Ada Lovelace" in ok.instructions
    as_dict = await run_hook(sample_hooks.as_dict, FACTS, 1.0)
    assert (as_dict.status, dict(as_dict.variables)) == ("ok", {"customer_name": "Grace"})
    failed = await run_hook(sample_hooks.explode, FACTS, 1.0)
    assert (failed.status, failed.detail) == ("error", "RuntimeError: CRM is down")
    late = await run_hook(sample_hooks.slow, FACTS, 0.05)
    assert late.status == "timeout" and late.seconds < 1.0
    assert (await run_hook(None, FACTS, 1.0)).status == "none"

    async def bad_variables(call: CallFacts) -> dict[str, object]:
        return {"variables": {"x": {"nested": True}}}

    bad = await run_hook(bad_variables, FACTS, 1.0)
    assert bad.status == "error" and "not a scalar" in bad.detail


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "is not module:function"),
        ("tests.app.agents.nowhere:f", "cannot import"),
        ("tests.app.agents.sample_hooks:missing", "has no 'missing'"),
        ("tests.app.agents.sample_hooks:not_async", "must be an async function"),
    ],
)
def test_bad_hook_spec_is_a_config_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_hook(spec)


def test_speech_turns_open_on_loud_and_close_after_silence() -> None:
    turns = SpeechTurns(silence_ms=60)  # three quiet 20 ms frames
    frames = [False, True, True, False, False, True, False, False, False, False]
    assert [turns.feed(f) for f in frames] == [
        None, "start", None, None, None, None, None, None, "end", None,
    ]  # fmt: skip
    assert turns.pause() is None
    assert turns.feed(True) == "start"
    assert turns.pause() == "end"
