"""Load: 50 concurrent simulated calls for 60 s with random barge-ins, on one server.

The server runs in the test process (where resources are measured); the fake Live
server and the 50 callers run in their own processes, as Google and Twilio do.
All calls complete, every recording and call record is present, and nothing leaks:
asyncio tasks, open file descriptors (sockets included) and threads return to their
baseline, and memory (RSS, live Python objects) stays put. The figures are printed
(`pytest -m slow -s`) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
from numpy.typing import NDArray

from app.assets import load_clip_8k
from app.dev.fakes.twilio_caller import CallOptions, simulate_calls
from app.dev.local_stack import FAKE_API_KEY, local_stack
from app.logs import configure_logging
from tests.reliability.conftest import wait_for_record

CALLS = 50
CALL_SECONDS = 60.0
RATE = 8000


@dataclass(frozen=True)
class Resources:
    tasks: int
    fds: int
    threads: int
    rss_mb: float
    py_objects: int


def resources() -> Resources:
    gc.collect()
    rss_kb = 0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return Resources(
        tasks=len(asyncio.all_tasks()),
        fds=len(os.listdir("/proc/self/fd")),
        threads=threading.active_count(),
        rss_mb=round(rss_kb / 1024, 1),
        py_objects=len(gc.get_objects()),
    )


def caller_track(seed: int, seconds: float) -> NDArray[np.int16]:
    """Speech bursts with random gaps: many start while the agent is still talking."""
    rng = random.Random(seed)
    clips = [load_clip_8k("caller_goodbye"), load_clip_8k("caller_booking")]
    parts: list[NDArray[np.int16]] = []
    total = 0
    while total < seconds * RATE:
        gap = np.zeros(int(rng.uniform(0.3, 4.0) * RATE), np.int16)
        clip = rng.choice(clips)
        burst = clip[: int(rng.uniform(0.8, clip.size / RATE) * RATE)]
        parts += [gap, burst]
        total += gap.size + burst.size
    return np.concatenate(parts)[: int(seconds * RATE)]


async def settle(services: Any, seconds: float = 30.0) -> None:
    """Wait until the server has wound every call down."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not services.active_calls and not services.bridges:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # sockets and writer threads finish just after


# --- the callers: a separate process, as Twilio is ------------------------------------


async def run_callers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """`spec["calls"]` simulated calls from a child process (the other CPU core)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.test_load",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).parents[2]),
    )
    out, _ = await proc.communicate(json.dumps(spec).encode())
    assert proc.returncode == 0, out[-2000:]
    results: list[dict[str, Any]] = json.loads(out.decode().splitlines()[-1])
    return results


async def _callers_main(spec: dict[str, Any]) -> list[dict[str, Any]]:
    seconds = float(spec["seconds"])
    options = [
        CallOptions(
            base_url=spec["base_url"],
            auth_token=spec["auth_token"],
            audio=caller_track(spec["seed"] + i, seconds),
            listen_seconds=1.0,
            max_seconds=seconds + 60,
        )
        for i in range(spec["calls"])
    ]
    reports = await simulate_calls(options)
    return [
        {
            "call_sid": r.call_sid,
            "error": r.error,
            "ended_by": r.ended_by,
            "clears": r.clears,
            "first_audio_ms": r.first_audio_ms,
        }
        for r in reports
    ]


@contextlib.contextmanager
def fake_live_process(cert_dir: Path) -> Iterator[tuple[str, str]]:
    """The fake Live server in its own process: (base URL, CA path)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.dev.fakes.live", "--port", "0", "--cert-dir", str(cert_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).parents[2]),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(": ", 1)[1].strip()
        ca = proc.stdout.readline().split(":", 1)[1].strip()
        yield url, ca
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def production_logging() -> Iterator[None]:
    """INFO JSON lines to a sink, as deployed (not into pytest's in-memory capture)."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with open(os.devnull, "w", encoding="utf-8") as sink:
        configure_logging("INFO", "json", stream=sink)
        try:
            yield
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            structlog.configure(**config)


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_50_concurrent_calls_for_60_s_with_barge_ins_complete_without_leaks(
    tmp_path: Path,
) -> None:
    with fake_live_process(tmp_path / "ca") as (live_url, ca), production_logging():
        async with local_stack(
            real_gemini=True,
            env_file=None,
            gemini_api_key=FAKE_API_KEY,
            gemini_base_url=live_url,
            ssl_cert_file=ca,
            recordings_dir=tmp_path / "recordings",
            tools="end_call",
        ) as s:
            spec = {"base_url": s.base_url, "auth_token": s.auth_token, "calls": CALLS}
            # Warm-up at the same concurrency: imports, thread pools, allocator arenas.
            warm = await run_callers(spec | {"seconds": 3.0, "seed": 1000})
            assert [c["error"] for c in warm] == [None] * CALLS
            await settle(s.services)
            before = resources()

            peak: list[Resources] = []

            async def sample() -> None:
                await asyncio.sleep(CALL_SECONDS / 2)
                peak.append(resources())

            sampler = asyncio.create_task(sample())
            began = time.monotonic()
            calls = await run_callers(spec | {"seconds": CALL_SECONDS, "seed": 0})
            wall = time.monotonic() - began
            await sampler
            records = [await wait_for_record(s, c["call_sid"], seconds=30) for c in calls]
            await settle(s.services)
            after = resources()
            recordings = s.settings.recordings_dir

    interruptions = sum(len(r["interruptions"]) for r in records)
    figures = {
        "calls": CALLS,
        "wall_s": round(wall, 1),
        "before": asdict(before),
        "during": asdict(peak[0]) if peak else None,
        "after": asdict(after),
        "barge_ins": interruptions,
        "calls_with_barge_ins": sum(1 for r in records if r["interruptions"]),
        "clears_heard_by_callers": sum(c["clears"] for c in calls),
    }
    print("\nload figures:", json.dumps(figures))

    assert [c["error"] for c in calls] == [None] * CALLS
    assert {c["ended_by"] for c in calls} == {"caller_hangup"}
    for call, record in zip(calls, records, strict=True):
        assert record["end_reason"] == "caller_hangup"
        assert record["recording"]["status"] == "complete"
        assert record["duration_s"] >= CALL_SECONDS - 1
        assert (recordings / f"{call['call_sid']}.wav").stat().st_size > RATE * 4 * 50
        assert call["first_audio_ms"] is not None
    assert figures["calls_with_barge_ins"] > CALLS // 2  # barge-ins happened, on most calls
    # No leaks: back to the warmed-up baseline.
    assert after.tasks <= before.tasks
    assert after.fds <= before.fds
    assert after.threads <= before.threads
    assert after.rss_mb - before.rss_mb < 100
    assert after.py_objects - before.py_objects < 20_000


if __name__ == "__main__":  # the caller process of run_callers
    print(json.dumps(asyncio.run(_callers_main(json.load(sys.stdin)))))
