"""The processes `voicebot bench` measures: the real server and the fake Live server.

Each runs in its own process so that the server's CPU (/proc/PID/stat) and memory
(/proc/PID/status) can be read apart from the load; `Placement` pins the server to its own
CPU when there are two or more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.dev.local_server import free_port

ROOT = Path(__file__).resolve().parents[3]


class ProcStat:
    """CPU and memory of one process, read from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        """CPU of the whole process, threads that have exited included."""
        return self._read(f"/proc/{self.pid}/stat")

    def main_thread_cpu_seconds(self) -> float:
        """CPU of the main thread alone (the server's event loop): the rest of the
        process's CPU is its other threads (recording writers, executors)."""
        return self._read(f"/proc/{self.pid}/task/{self.pid}/stat")

    def _read(self, path: str) -> float:
        text = Path(path).read_text()
        fields = text[text.rindex(")") + 2 :].split()
        # fields[11], [12] are utime, stime (the 14th and 15th of the whole line).
        return (int(fields[11]) + int(fields[12])) / self._tick

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@dataclass
class Stack:
    base_url: str
    auth_token: str
    admin_token: str
    server: ProcStat
    fake: ProcStat
    placement: dict[str, Any] = field(default_factory=dict)


class Placement:
    """Which CPUs the server and the load run on.

    On a shared pair of cores the callers and the fake steal the server's CPU, and the
    server's figures then say more about the load generator than about the bridge. Pinned,
    the server has CPU 0 to itself and everything else runs on the rest; children inherit
    the affinity of this process at spawn, so this process switches before each spawn.
    """

    def __init__(self, pin: bool) -> None:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.enabled = pin and len(cpus) >= 2
        self._all = set(cpus)
        self.server_cpus = {cpus[0]} if self.enabled else set(cpus)
        self.load_cpus = self._all - self.server_cpus if self.enabled else set(cpus)

    @contextlib.contextmanager
    def for_server(self) -> Iterator[None]:
        self._set(self.server_cpus)
        try:
            yield
        finally:
            self._set(self.load_cpus)

    def for_load(self) -> None:
        self._set(self.load_cpus)

    def release(self) -> None:
        self._set(self._all)

    def _set(self, cpus: set[int]) -> None:
        if self.enabled:
            os.sched_setaffinity(0, cpus)

    def describe(self) -> dict[str, Any]:
        return {
            "pinned": self.enabled,
            "server_cpus": sorted(self.server_cpus),
            "load_cpus": sorted(self.load_cpus),
        }


async def _read_fake_banner(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    assert proc.stdout is not None
    base_url = ca = ""
    while not (base_url and ca):
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise RuntimeError("the fake Live server exited during start-up")
        if line.startswith("fake Live server:"):
            base_url = line.split(":", 1)[1].strip()
        elif line.startswith("CA certificate:"):
            ca = line.split(":", 1)[1].strip()
    return base_url, ca


async def _wait_healthy(base_url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError(f"the server exited during start-up ({proc.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(base_url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("the server did not start within 15 s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def bench_stack(
    work: Path,
    server_prefix: Sequence[str] = (),
    *,
    scenario: dict[str, Any],
    live_client: str | None = None,
    pin: bool = True,
) -> AsyncIterator[Stack]:
    """The fake Live server (playing `scenario`) and the real server, each in its own
    process."""
    scenario_file = work / "scenario.json"
    scenario_file.write_text(json.dumps(scenario), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    placement = Placement(pin)
    placement.for_load()
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.dev.fakes.live",
        "--port",
        "0",
        "--scenario",
        str(scenario_file),
        "--cert-dir",
        str(work / "ca"),
        stdout=subprocess.PIPE,
        cwd=work,
        env=env,
    )
    server: asyncio.subprocess.Process | None = None
    try:
        fake_url, ca = await asyncio.wait_for(_read_fake_banner(fake), 30)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        auth, admin = secrets.token_hex(16), secrets.token_hex(16)
        server_env = env | {
            "GEMINI_API_KEY": "fake-live-key",
            "GEMINI_BASE_URL": fake_url,
            "SSL_CERT_FILE": ca,
            "TWILIO_AUTH_TOKEN": auth,
            "ADMIN_TOKEN": admin,
            "PUBLIC_BASE_URL": base_url,
            "RECORDINGS_DIR": str(work / "recordings"),
            "LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DRAIN_TIMEOUT": "2",
            "BENCH_TIMINGS": "200000",
        }
        if live_client:
            server_env["LIVE_CLIENT"] = live_client
        with placement.for_server():
            server = await asyncio.create_subprocess_exec(
                *(server_prefix or [sys.executable]),
                "-m",
                "app.cli",
                "serve",
                cwd=work,  # no stray .env from wherever the bench was started
                env=server_env,
                stdout=subprocess.DEVNULL,
            )
        await _wait_healthy(base_url, server)
        yield Stack(
            base_url,
            auth,
            admin,
            ProcStat(server.pid),
            ProcStat(fake.pid),
            placement.describe() | {"live_client": live_client or "default"},
        )
    finally:
        if server is not None:
            await _stop(server)
        await _stop(fake)
        placement.release()


async def fetch_timings(stack: Stack, *, reset: bool) -> dict[str, list[float]]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(
            stack.base_url + "/bench/timings",
            params={"reset": "1"} if reset else None,
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        )
    response.raise_for_status()
    data: dict[str, list[float]] = response.json()
    return data
