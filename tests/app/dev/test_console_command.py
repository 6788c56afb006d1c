"""`voicebot console`: prints a URL and a token that open the console (fake Live, no key)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from app.dev.console import run_console
from app.dev.local_server import free_port


async def test_console_command_serves_a_console_to_log_in_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env; recordings land here
    for name in ("GEMINI_API_KEY", "ADMIN_TOKEN", "CONSOLE_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    stop = asyncio.Event()
    port = free_port()
    task = asyncio.create_task(run_console(port, stop))
    try:
        for _ in range(200):
            out = capsys.readouterr().out if not task.done() else ""
            if "log in with" in out:
                break
            await asyncio.sleep(0.05)
        url = re.search(r"(http://127\.0\.0\.1:\d+)/console/", out)
        token = re.search(r"admin token: (\S+)", out)
        assert url and token, out
        assert url.group(1) == f"http://127.0.0.1:{port}" and "fake Live" in out
        base = url.group(1)
        async with httpx.AsyncClient(base_url=base, headers={"Origin": base}) as client:
            assert (await client.get("/console/talk")).status_code == 303
            login = await client.post("/console/login", data={"token": token.group(1)})
            assert login.status_code == 200
            assert (await client.get("/console/talk")).status_code == 200
            created = await client.post("/console/api/webcall", json={"from": "+1555"})
            assert created.status_code == 201
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert task.result() == 0
