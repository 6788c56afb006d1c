"""`voicebot serve` as a child process, run the way a container runs it.

The child gets a clean environment (only what the test passes, plus PATH/HOME) and a
working directory without a `.env`, so a developer's settings cannot leak in.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

import httpx

from app.dev.local_server import free_port

_VOICEBOT = Path(sys.executable).with_name("voicebot")
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def voicebot_command(*args: str) -> list[str]:
    """The installed `voicebot` entry point (or `python -m app.cli` without it)."""
    if _VOICEBOT.is_file():
        return [str(_VOICEBOT), *args]
    return [sys.executable, "-m", "app.cli", *args]


def child_env(settings: dict[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in _KEEP if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    return env | settings


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    """Poll `check` until it holds; TimeoutError after `seconds`."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


def run_voicebot(
    cwd: Path, settings: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a `voicebot` command that is expected to exit by itself."""
    return subprocess.run(
        voicebot_command(*args),
        cwd=cwd,
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServeProcess:
    """`voicebot serve` on a free port; stopped (SIGKILL if need be) on exit."""

    def __init__(self, cwd: Path, settings: dict[str, str], *args: str) -> None:
        self.port = int(settings.get("PORT") or free_port())
        self.url = f"http://127.0.0.1:{self.port}"
        self._cwd = cwd
        self._settings = {"HOST": "127.0.0.1", "LOG_FORMAT": "json"} | settings
        self._settings["PORT"] = str(self.port)
        self._args = args
        self._out = cwd / f"serve-{self.port}.log"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def proc(self) -> asyncio.subprocess.Process:
        assert self._proc is not None, "not started"
        return self._proc

    def output(self) -> str:
        """What the child wrote so far (stdout and stderr, interleaved)."""
        return self._out.read_text("utf-8", "replace") if self._out.exists() else ""

    async def __aenter__(self) -> ServeProcess:
        with self._out.open("wb") as out:
            self._proc = await asyncio.create_subprocess_exec(
                *voicebot_command("serve", *self._args),
                cwd=self._cwd,
                env=child_env(self._settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        await self.wait_ready_to_serve()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await asyncio.wait_for(self._proc.wait(), 10)

    async def wait_ready_to_serve(self, seconds: float = 30) -> None:
        """Wait until `/healthz` answers (the process is up and listening)."""
        async with httpx.AsyncClient(trust_env=False) as client:

            async def healthy() -> bool:
                if self.proc.returncode is not None:
                    raise AssertionError(
                        f"voicebot serve exited with {self.proc.returncode}:\n{self.output()}"
                    )
                try:
                    return (await client.get(self.url + "/healthz", timeout=2)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, seconds)

    def send_signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, seconds: float) -> int:
        """The exit code, waiting up to `seconds`."""
        return await asyncio.wait_for(self.proc.wait(), seconds)
