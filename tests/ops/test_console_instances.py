"""The console across two instances: live events travel through Redis (app/redis_events.py).

Two full stacks share one Redis and nothing else. A phone call (the simulated Twilio
caller) runs on A; a console logged in on B lists it, streams its events as they happen,
and listens in to its audio; when it ends, B's list empties.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from app.dev.fakes.live import Scenario
from app.dev.fakes.twilio_caller import simulate_call
from app.dev.local_stack import LocalStack, local_stack
from app.redis_events import RedisBus
from tests.e2e.conftest import call_options
from tests.ops.process import eventually

pytestmark = pytest.mark.redis

ADMIN = "console-instances-admin-token"
SCENARIO = {"greeting": {"clip": "tone:440:1.0", "text": "Hello from instance A."}}


@contextlib.asynccontextmanager
async def logged_in(s: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=s.base_url, headers={"Origin": s.base_url}, trust_env=False, timeout=30
    ) as client:
        response = await client.post("/console/login", data={"token": ADMIN})
        assert response.status_code == 200, response.text
        yield client


async def test_a_console_on_one_instance_follows_a_call_on_another(
    redis_url: str, tmp_path: Any
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(
                local_stack(
                    Scenario.from_dict(SCENARIO),
                    redis_url=redis_url,
                    admin_token=ADMIN,
                    recordings_dir=tmp_path / name,
                )
            )
            for name in ("a", "b")
        ]
        assert isinstance(b.services.console_bus, RedisBus)
        client = await stack.enter_async_context(logged_in(b))
        events = await stack.enter_async_context(client.stream("GET", "/console/api/events"))
        lines = events.aiter_lines()
        assert await anext(lines) == "event: snapshot"
        await anext(lines)

        options = call_options(a, np.zeros(8000 * 3, dtype=np.int16), listen_seconds=3.0)
        call = asyncio.create_task(simulate_call(options))
        async with asyncio.timeout(30):
            while not (await anext(lines)).startswith("data: "):
                pass
        sid = options.call_sid
        active = (await client.get("/console/api/active")).json()["calls"]
        assert [c["call_sid"] for c in active] == [sid]  # B lists A's call

        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        ears = await websockets.connect(
            b.base_url.replace("http://", "ws://") + f"/console/ws/listen/{sid}",
            additional_headers={"Origin": b.base_url, "Cookie": cookie},
            proxy=None,
        )
        async with ears, client.stream("GET", f"/console/api/calls/{sid}/events") as stream:
            call_lines = stream.aiter_lines()
            assert await anext(call_lines) == "event: call.started"
            frame = await asyncio.wait_for(ears.recv(), 20)  # A's audio, heard on B
            side, _at = struct.unpack_from("<BI", frame)
            assert side in (0, 1, 2)
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(60):
                async for line in call_lines:
                    if line.startswith("data: "):
                        seen.append(json.loads(line.removeprefix("data: ")))
                        if seen[-1].get("type") == "call.ended":
                            break
        report = await call
        assert report.error is None, report.to_dict()
        kinds = {e.get("type") for e in seen}
        assert "transcript" in kinds and seen[-1]["end_reason"] != "instance_lost", seen

        async def no_calls_listed() -> bool:
            return not (await client.get("/console/api/active")).json()["calls"]

        await eventually(no_calls_listed, 10)
