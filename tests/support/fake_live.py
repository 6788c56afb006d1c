"""Fixtures for the fake Gemini Live server (loaded as a pytest plugin by tests/conftest.py).

    async def test_x(fake_live_factory):
        server = await fake_live_factory({"turns": [{"clip": "reply_booking"}]})
        client = genai.Client(api_key=FAKE_API_KEY, http_options=live_http_options(server))

`fake_live` is a server with the default scenario (any key, any model). Servers stop at
teardown, closing their connections with 1001.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest

from app.dev.fakes.live import FakeLiveServer, Scenario

#: A key for scenarios that check it (`Scenario(api_key=FAKE_API_KEY)`).
FAKE_API_KEY = "fake-live-test-key"


class FakeLiveFactory(Protocol):
    def __call__(
        self,
        scenario: Scenario | dict[str, Any] | None = None,
        *,
        cert_dir: Path | None = None,
    ) -> Awaitable[FakeLiveServer]: ...


def live_http_options(server: FakeLiveServer, api_version: str = "v1beta") -> dict[str, Any]:
    """`http_options` for `genai.Client` that reach `server` and trust its CA."""
    return {
        "base_url": server.base_url,
        "api_version": api_version,
        "async_client_args": {"ssl": server.client_ssl_context()},
    }


@pytest.fixture
async def fake_live_factory() -> AsyncIterator[FakeLiveFactory]:
    servers: list[FakeLiveServer] = []

    async def make(
        scenario: Scenario | dict[str, Any] | None = None, *, cert_dir: Path | None = None
    ) -> FakeLiveServer:
        if isinstance(scenario, dict):
            scenario = Scenario.from_dict(scenario)
        server = FakeLiveServer(scenario, cert_dir=cert_dir)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        await server.stop()


@pytest.fixture
async def fake_live(fake_live_factory: FakeLiveFactory) -> FakeLiveServer:
    return await fake_live_factory()


__all__ = [
    "FAKE_API_KEY",
    "FakeLiveFactory",
    "fake_live",
    "fake_live_factory",
    "live_http_options",
]
