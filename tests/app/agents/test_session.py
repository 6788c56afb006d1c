"""A call's session across instances: the hook runs once, its outcome travels in Redis.

Two `Services` built from the same settings stand for two instances sharing REDIS_URL:
the webhook's instance opens (and pre-warms) the session, the stream's instance finds
no pre-warmed session and opens its own, or reconnects, with the same prompt.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from app.agents.session import SETUP_KEY, CallConnector, facts_from_parameters
from app.dev.fakes.live import FakeLiveServer
from app.errors import LiveClosedError
from app.live.events import SessionInfo
from app.server import build_services
from app.services import Services
from app.settings import load_settings
from tests.app.agents import sample_hooks
from tests.support.fake_live import FakeLiveFactory

AGENTS = '[agents.sales]\ndefault = true\nsystem_prompt = "Sales for {customer_name}."\n'


def instance(server: FakeLiveServer, redis_url: str, tmp_path: Path, **extra: Any) -> Services:
    tmp_path.mkdir(parents=True, exist_ok=True)
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS)
    settings = load_settings(
        env_file=None,
        gemini_api_key="k",
        gemini_base_url=server.base_url,
        ssl_cert_file=server.ca_pem_path,
        redis_url=redis_url,
        agents_file=agents,
        call_setup_hook="tests.app.agents.sample_hooks:enrich",
        recordings_dir=tmp_path,
        **extra,
    )
    return build_services(settings)


def connector_for(services: Services, call_sid: str) -> CallConnector:
    params = {"from": "+15550142424", "to": "+15550100001", "agent": "sales"}
    facts = facts_from_parameters(call_sid, params, "sales")
    return CallConnector(services, services.agents.default, facts)


def prompt(server: FakeLiveServer, index: int) -> str:
    setup = server.sessions[index].setup
    assert setup is not None
    return str(setup["systemInstruction"]["parts"][0]["text"])


async def test_the_stream_on_another_instance_reuses_the_hooks_outcome(
    fake_live_factory: FakeLiveFactory, redis_url: str, tmp_path: Path
) -> None:
    server = await fake_live_factory()
    a = instance(server, redis_url, tmp_path / "a")
    b = instance(server, redis_url, tmp_path / "b")
    call_sid = "CA" + secrets.token_hex(16)
    sample_hooks.SEEN.clear()
    try:
        first = await connector_for(a, call_sid).open()  # the webhook's pre-warm on A
        await first.close()
        on_b = connector_for(b, call_sid)
        second = await on_b.open()  # the stream on B: no pre-warmed session there
        await second.close()
        again = await connector_for(b, call_sid).connect(resume_handle=None)  # a reconnect
        await again.close()
    finally:
        for services in (a, b):
            await services.state_store.delete(call_sid)
            await services.state_store.aclose()
            if services.redis is not None:
                await services.redis.aclose()
    assert len(sample_hooks.SEEN) == 1  # the hook ran once, on A
    expected = "Sales for Ada.\n\nThe caller is Ada Lovelace, a gold customer (agent sales)."
    assert [prompt(server, i) for i in range(3)] == [expected] * 3


async def test_hook_outcome_is_kept_in_the_calls_state(
    fake_live_factory: FakeLiveFactory, redis_url: str, tmp_path: Path
) -> None:
    server = await fake_live_factory()
    services = instance(server, redis_url, tmp_path)
    call_sid = "CA" + secrets.token_hex(16)
    try:
        session = await connector_for(services, call_sid).open()
        await session.close()
        state = await services.state_store.load(call_sid)
    finally:
        await services.state_store.delete(call_sid)
        await services.state_store.aclose()
        if services.redis is not None:
            await services.redis.aclose()
    assert state["customer_name"] == "Ada"
    setup = state[SETUP_KEY]
    assert setup["agent"] == "sales" and setup["hook"]["status"] == "ok"
    assert setup["variables"]["caller_number"] == "+15550142424"


class GreetingFails:
    """A connector whose sessions open, then drop as the greeting is sent."""

    def __init__(self) -> None:
        self.closed: list[bool] = []

    async def connect(
        self, *, resume_handle: str | None = None, options: Any = None, history: Any = None
    ) -> Any:
        closed = self.closed

        class Session:
            info = SessionInfo(session_id="s", setup_seconds=0.01)

            async def send_text(self, text: str) -> None:
                raise LiveClosedError("Live connection closed: code 1011")

            async def close(self) -> None:
                closed.append(True)

        return Session()


async def test_a_session_that_fails_its_greeting_is_closed(tmp_path: Path) -> None:
    connector = GreetingFails()
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS)
    settings = load_settings(env_file=None, agents_file=agents, recordings_dir=tmp_path)
    services = build_services(settings, connector=connector)
    with pytest.raises(LiveClosedError):
        await connector_for(services, "CA" + "1" * 32).open()
    assert connector.closed == [True]
