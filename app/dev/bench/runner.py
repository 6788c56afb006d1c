"""`voicebot bench`: what a call costs and what the bridge adds, measured on this machine.

Three processes, so the server's own CPU and memory can be read apart from the load:
- the real server (`python -m app.cli serve`, uvicorn + Starlette), with raw bridge
  timings on (`BENCH_TIMINGS`, read at `GET /bench/timings` behind `ADMIN_TOKEN`);
- the fake Live server (`python -m app.dev.fakes.live`, TLS, the real google-genai SDK in
  between), replying with audio at 4x real time like Gemini, barge-in on;
- this process: N Twilio-faithful callers (`app.dev.fakes.twilio_caller`), each speaking bundled
  clips for `duration` seconds, sometimes over the agent (barge-in).

Reported (every figure is measured when it runs; nothing is quoted or asserted):
- server CPU seconds per call-second (/proc/PID/stat utime+stime), whole run and while
  all calls are up; memory per call = (peak VmRSS under load - idle VmRSS after a
  warm-up call) / N;
- bridge-added latency, p50/p95/p99/max, timed inside the server at these points:
  caller->model: frame off the Twilio socket -> its audio written to the Live socket;
  model->caller: Live audio event in hand -> its frames written to Twilio (chunks that
  pacing lets out at once; see `CallBridge._on_agent_audio`);
  interrupted->clear: Live's `interrupted` -> `clear` written to Twilio;
- stream start -> first agent audio heard at the caller (pre-warmed greeting, 20 ms ticks);
- frames late or lost at the caller: gaps in paced playback after audio began;
- the codec's and the message path's CPU per call-second (timed in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from app.assets import load_clip_8k
from app.dev.bench.floor import run_floor
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_calls
from app.dev.local_server import free_port
from telephony.messages import inbound_media_message, media_message, parse_message
from telephony.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from telephony.resample import inbound_resampler, outbound_resampler

RATE = 8000
FRAME_MS = 20
WARMUP_SECONDS = 2.0
BAR_P99_MS = 10.0  # the limit for "largest N"
ROOT = Path(__file__).resolve().parents[3]

# Gemini-like: replies stream at 4x real time in 40 ms chunks; the turn ends after
# 500 ms of caller silence (longer than any pause inside the caller's clips, so a reply
# never starts mid-utterance); speech over a reply (still playing) interrupts it.
SCENARIO: dict[str, Any] = {
    "greeting": {"clip": "greeting"},
    "turns": [{"clip": "reply_booking"}, {"clip": "reply_generic"}],
    "when_exhausted": "cycle",
    "vad": {"silence_ms": 500},
    "audio": {"chunk_ms": 40, "speed": 4.0, "bundle": True},
    "barge_in": {"enabled": True, "margin_ms": 300},
}


# --- the callers' script ---------------------------------------------------------------


def caller_script(seconds: float, offset: int = 0) -> NDArray[np.int16]:
    """`seconds` of caller audio: 1 s of listening (then talking over the greeting), and
    cycles of an utterance, a short pause, an utterance over the agent's reply (barge-in)
    and a long pause that lets the next reply play out. `offset` shifts where in the
    cycle each call starts (golden-ratio steps, so any N spreads evenly): callers in
    lock-step would make every reply stream at the same moment, a burst real traffic
    does not have."""
    booking, goodbye = load_clip_8k("caller_booking"), load_clip_8k("caller_goodbye")

    def silence(s: float) -> NDArray[np.int16]:
        return np.zeros(int(s * RATE), np.int16)

    cycle = np.concatenate([booking, silence(0.9), goodbye, silence(4.5)])
    lead = silence(1.0 + 0.02 * (offset % 25))
    phase = int((offset * _GOLDEN) % 1.0 * cycle.size)
    want = int(seconds * RATE)
    repeats = -(-(want + phase) // cycle.size) + 1
    body = np.tile(cycle, repeats)[phase:]
    return np.concatenate([lead, body])[:want]


_GOLDEN = (5**0.5 - 1) / 2


# --- processes -------------------------------------------------------------------------


class ProcStat:
    """CPU and memory of one process, read from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        text = Path(f"/proc/{self.pid}/stat").read_text()
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
    live_client: str | None = None,
    pin: bool = True,
) -> AsyncIterator[Stack]:
    """The fake Live server and the real server, each in its own process."""
    scenario = work / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO), encoding="utf-8")
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
        str(scenario),
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


async def _timings(stack: Stack, *, reset: bool) -> dict[str, list[float]]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(
            stack.base_url + "/bench/timings",
            params={"reset": "1"} if reset else None,
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        )
    response.raise_for_status()
    data: dict[str, list[float]] = response.json()
    return data


# --- the load ----------------------------------------------------------------------------


@dataclass
class Sampler:
    """Samples server RSS and this process's event-loop lag while the calls run."""

    server: ProcStat
    rss: list[tuple[float, int]] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sample = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.loop_lag.append(loop.time() - before - 0.01)
            now = loop.time()
            if now >= next_sample:
                self.rss.append((now, self.server.rss_bytes()))
                self.cpu.append((now, self.server.cpu_seconds()))
                next_sample = now + 0.25


def _call_options(stack: Stack, n: int, seconds: float) -> list[CallOptions]:
    return [
        CallOptions(
            base_url=stack.base_url,
            auth_token=stack.auth_token,
            audio=caller_script(seconds, offset=i),
            listen_seconds=0.0,  # hang up when the script ends
            max_seconds=seconds + 5,
        )
        for i in range(n)
    ]


def ramp_seconds(calls: int, duration: float) -> float:
    """Until every call is set up and talking: calls start 20 ms apart, and each one's
    webhook, Live connect and greeting take about a second. Capped to half the run."""
    return min(1.5 + 0.02 * calls, duration / 2)


async def _ramp_timings(stack: Stack, seconds: float) -> dict[str, list[float]]:
    """The raw timings of the ramp-up, taken (and reset) once it is over."""
    await asyncio.sleep(seconds)
    return await _timings(stack, reset=True)


def _merge(*parts: dict[str, list[float]]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for part in parts:
        for name, samples in part.items():
            merged.setdefault(name, []).extend(samples)
    return merged


async def _run_calls(stack: Stack, n: int, seconds: float) -> tuple[list[CallReport], Sampler]:
    sampler = Sampler(stack.server)
    task = asyncio.create_task(sampler.run())
    try:
        reports = await simulate_calls(_call_options(stack, n, seconds))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return reports, sampler


# --- CPU micro-timings in this process ---------------------------------------------------


def _per_call_second(fn: Any, repeat: int) -> float:
    """ms of CPU for one call-second of `fn` (50 frames), median over `repeat` runs."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(50):
            fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def codec_costs(repeat: int = 40) -> dict[str, float]:
    """Codec and message-path CPU per call-second, both directions (20 ms frames)."""
    t = np.arange(480) / 24000
    pcm24 = (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    ulaw = pcm16_to_ulaw(pcm24[::3])
    up, down = inbound_resampler(), outbound_resampler()
    sid = "MZ" + "0" * 32
    raw = inbound_media_message(sid, 9, chunk=7, timestamp_ms=140, payload=ulaw)

    def inbound() -> None:
        up.process(ulaw_to_pcm16(ulaw)).tobytes()

    def outbound() -> None:
        pcm16_to_ulaw(down.process(pcm24))

    def messages() -> None:
        parse_message(raw)
        media_message(sid, ulaw)

    codec_in = _per_call_second(inbound, repeat)
    codec_out = _per_call_second(outbound, repeat)
    return {
        "codec_in_ms": codec_in,
        "codec_out_ms": codec_out,
        "codec_ms": codec_in + codec_out,
        "twilio_json_ms": _per_call_second(messages, repeat),
    }


# --- the report --------------------------------------------------------------------------


def _percentiles(samples_s: Sequence[float]) -> dict[str, Any]:
    if not samples_s:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(samples_s, dtype=np.float64) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "count": int(ms.size),
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def _steady_window(
    series: list[tuple[float, Any]], start: float, end: float
) -> list[tuple[float, Any]]:
    return [(t, v) for t, v in series if start <= t <= end]


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def summarize(
    calls: int,
    duration: float,
    reports: list[CallReport],
    sampler: Sampler,
    timings: dict[str, list[float]],
    cpu: tuple[float, float],
    idle_rss: int,
    started: float,
    codec: dict[str, float],
    placement: dict[str, Any] | None = None,
    busy: dict[str, float] | None = None,
) -> dict[str, Any]:
    call_seconds = sum(r.duration_ms for r in reports) / 1000
    cpu_used = cpu[1] - cpu[0]
    # Steady state: after the last call started streaming, before the first one ended.
    steady_from = started + 1.5
    steady_to = started + max(duration - 1.0, 1.5)
    window = _steady_window(sampler.cpu, steady_from, steady_to)
    steady_cpu = None
    if len(window) >= 2 and window[-1][0] > window[0][0]:
        span = window[-1][0] - window[0][0]
        steady_cpu = (window[-1][1] - window[0][1]) / (span * calls) * 1000
    rss_window = _steady_window(sampler.rss, steady_from, steady_to) or sampler.rss
    peak_rss = max((v for _, v in rss_window), default=idle_rss)
    gap_frames = sum(round(r.underrun_ms / FRAME_MS) for r in reports)
    failed = [r.error or r.ended_by for r in reports if r.error or r.ended_by == "error"]
    first_audio = [r.first_audio_ms for r in reports if r.first_audio_ms is not None]
    c2m = _percentiles(timings.get("caller_to_model", []))
    m2c = _percentiles(timings.get("model_to_caller", []))
    clear = _percentiles(timings.get("interrupted_to_clear", []))
    server_lag = _percentiles(timings.get("loop_lag", []))
    ramp_lag = _percentiles(timings.get("loop_lag_ramp", []))
    p99s = [d["p99_ms"] for d in (c2m, m2c)]
    meets = not failed and gap_frames == 0 and all(p is not None and p <= BAR_P99_MS for p in p99s)
    return {
        "calls": calls,
        "duration_s": duration,
        "machine": machine(),
        "placement": placement or {},
        "cpu_busy_percent": {k: round(v * 100, 1) for k, v in (busy or {}).items()},
        "failed_calls": len(failed),
        "errors": failed[:5],
        "call_seconds": round(call_seconds, 1),
        "server": {
            "cpu_s": round(cpu_used, 3),
            "cpu_ms_per_call_second": round(cpu_used / call_seconds * 1000, 3)
            if call_seconds
            else None,
            "steady_cpu_ms_per_call_second": None if steady_cpu is None else round(steady_cpu, 3),
            "idle_rss_mb": round(idle_rss / 2**20, 1),
            "peak_rss_mb": round(peak_rss / 2**20, 1),
            "rss_mb_per_call": round((peak_rss - idle_rss) / calls / 2**20, 3),
        },
        "latency_ms": {
            "caller_to_model": c2m,
            "model_to_caller": m2c,
            "interrupted_to_clear": clear,
            "server_loop_lag": server_lag,
            "server_loop_lag_ramp": ramp_lag,
            "first_agent_audio_at_caller": _percentiles([v / 1000 for v in first_audio]),
        },
        "caller": {
            "frames_received": sum(r.frames_received for r in reports),
            "media_messages_received": sum(r.media_messages for r in reports),
            "underruns": sum(r.underruns for r in reports),
            "late_or_lost_frames": gap_frames,
            "clears": sum(r.clears for r in reports),
            "bench_loop_lag_p99_ms": round(float(np.percentile(sampler.loop_lag, 99)) * 1000, 2)
            if sampler.loop_lag
            else None,
        },
        "codec_ms_per_call_second": {k: round(v, 3) for k, v in codec.items()},
        "meets_p99_10ms_no_loss": meets,
    }


async def run_bench(
    calls: int,
    duration: float,
    *,
    warmup_seconds: float = WARMUP_SECONDS,
    server_prefix: Sequence[str] = (),
    live_client: str | None = None,
    pin: bool = True,
    floor: bool = False,
) -> dict[str, Any]:
    codec = await asyncio.to_thread(codec_costs)
    with tempfile.TemporaryDirectory(prefix="voicebot-bench-") as tmp:
        async with bench_stack(Path(tmp), server_prefix, live_client=live_client, pin=pin) as stack:
            if warmup_seconds > 0:
                await _run_calls(stack, 1, warmup_seconds)
            await asyncio.sleep(0.5)  # let the warm-up call's recording close
            await _timings(stack, reset=True)
            idle_rss = stack.server.rss_bytes()
            loop = asyncio.get_running_loop()
            started = loop.time()
            cpu_before = stack.server.cpu_seconds()
            load_before = (stack.fake.cpu_seconds(), time.process_time())
            ramp = asyncio.create_task(_ramp_timings(stack, ramp_seconds(calls, duration)))
            try:
                reports, sampler = await _run_calls(stack, calls, duration)
            except BaseException:
                ramp.cancel()  # the run failed: nothing will read the ramp's timings
                raise
            cpu_after = stack.server.cpu_seconds()
            load_after = (stack.fake.cpu_seconds(), time.process_time())
            wall = loop.time() - started
            steady = await _timings(stack, reset=True)
            ramp_part = await ramp
            timings = _merge(ramp_part, steady)  # bridge timings: the whole run
            timings["loop_lag"] = steady.get("loop_lag", [])
            timings["loop_lag_ramp"] = ramp_part.get("loop_lag", [])
    result = summarize(
        calls,
        duration,
        reports,
        sampler,
        timings,
        (cpu_before, cpu_after),
        idle_rss,
        started,
        codec,
        stack.placement,
        busy={
            # Share of one CPU each process kept busy over the run: when the load side
            # nears 100% per CPU it has, late frames are the load generator's, not ours.
            "server": (cpu_after - cpu_before) / wall,
            "fake_live": (load_after[0] - load_before[0]) / wall,
            "callers": (load_after[1] - load_before[1]) / wall,
        },
    )
    if floor:
        with tempfile.TemporaryDirectory(prefix="voicebot-floor-") as tmp:
            placement = Placement(pin)
            try:
                result["floor"] = await run_floor(
                    calls, duration, Path(tmp), placement, lambda pid: ProcStat(pid).cpu_seconds()
                )
            finally:
                placement.release()
    return result


def _fmt(d: dict[str, Any]) -> str:
    if not d["count"]:
        return "no samples"
    return (
        f"p50 {d['p50_ms']:.3f}  p95 {d['p95_ms']:.3f}  p99 {d['p99_ms']:.3f}  "
        f"max {d['max_ms']:.3f} ms  (n={d['count']})"
    )


def print_report(r: dict[str, Any]) -> None:
    m, s, lat, c = r["machine"], r["server"], r["latency_ms"], r["caller"]
    print(f"voicebot bench: {r['calls']} calls x {r['duration_s']} s")
    print(f"  machine: {m['cpus']} CPUs, {m['cpu_model']}, Python {m['python']}")
    p = r.get("placement") or {}
    if p:
        where = (
            f"server on CPU {p['server_cpus']}, fake Live and callers on CPU {p['load_cpus']}"
            if p["pinned"]
            else "server, fake Live and callers share every CPU"
        )
        print(f"  placement: {where}; Live client: {p.get('live_client')}")
    if r["failed_calls"]:
        print(f"  FAILED calls: {r['failed_calls']}: {r['errors']}")
    busy = r.get("cpu_busy_percent") or {}
    if busy:
        print(
            "  CPU busy (% of one CPU): "
            + ", ".join(f"{name} {value}%" for name, value in busy.items())
        )
    print("\nServer process")
    print(
        f"  CPU: {s['cpu_ms_per_call_second']} ms per call-second "
        f"(steady state {s['steady_cpu_ms_per_call_second']})"
    )
    print(
        f"  memory: {s['rss_mb_per_call']} MB per call "
        f"(idle {s['idle_rss_mb']} MB, peak {s['peak_rss_mb']} MB)"
    )
    print("\nBridge-added latency (inside the server)")
    print(f"  caller -> model      {_fmt(lat['caller_to_model'])}")
    print(f"  model -> caller      {_fmt(lat['model_to_caller'])}")
    print(f"  interrupted -> clear {_fmt(lat['interrupted_to_clear'])}")
    if "server_loop_lag" in lat:
        print(f"  server loop lag      {_fmt(lat['server_loop_lag'])}  (every 50 ms, calls up)")
        print(f"    while calls start  {_fmt(lat['server_loop_lag_ramp'])}")
    print("\nAt the caller")
    print(f"  stream start -> first agent audio: {_fmt(lat['first_agent_audio_at_caller'])}")
    print(
        f"  late or lost frames: {c['late_or_lost_frames']} ({c['underruns']} gaps), "
        f"clears: {c['clears']}, caller loop lag p99: {c['bench_loop_lag_p99_ms']} ms"
    )
    if r.get("floor"):
        print(
            f"  floor, the same stack only relaying caller frames to a TLS sink "
            f"(app/bench_floor.py): {r['floor']['cpu_ms_per_call_second']} ms per call-second"
        )
    codec = r["codec_ms_per_call_second"]
    print("\nCPU per call-second, timed in this process")
    print(
        f"  codec: {codec['codec_ms']:.3f} ms (in {codec['codec_in_ms']:.3f}, "
        f"out {codec['codec_out_ms']:.3f}); Twilio JSON+base64: {codec['twilio_json_ms']:.3f} ms"
    )
    verdict = "yes" if r["meets_p99_10ms_no_loss"] else "no"
    print(f"\np99 <= {BAR_P99_MS:g} ms both ways and no frame lost: {verdict}")


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    # The callers are the load generator: the faster loop keeps them on time.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _p99(result: dict[str, Any], name: str) -> str:
    value = result["latency_ms"].get(name, {}).get("p99_ms")
    return "-" if value is None else f"{value:.2f}"


def _busy(result: dict[str, Any]) -> str:
    busy = result.get("cpu_busy_percent") or {}
    return "/".join(f"{busy[k]:.0f}" for k in ("server", "fake_live", "callers") if k in busy)


def sweep_table(results: list[dict[str, Any]]) -> str:
    """One line per N, and the largest N that met the bar."""
    lines = [
        "    N  CPU ms/call-s (steady)  MB/call  c->m p99  m->c p99  clear p99  lag p99  lost"
        "  failed  ok"
        "  busy% server/fake/callers  floor",
    ]
    best = None
    for r in results:
        s = r["server"]
        ok = r["meets_p99_10ms_no_loss"]
        if ok:
            best = r["calls"] if best is None else max(best, r["calls"])
        cpu = f"{s['cpu_ms_per_call_second']} ({s['steady_cpu_ms_per_call_second']})"
        lines.append(
            f"{r['calls']:>5}  {cpu:>22}  {s['rss_mb_per_call']:>7}"
            f"  {_p99(r, 'caller_to_model'):>8}  {_p99(r, 'model_to_caller'):>8}"
            f"  {_p99(r, 'interrupted_to_clear'):>9}  {_p99(r, 'server_loop_lag'):>7}"
            f"  {r['caller']['late_or_lost_frames']:>4}"
            f"  {r['failed_calls']:>6}  {'yes' if ok else 'no':>3}"
            f"  {_busy(r):>25}  {(r.get('floor') or {}).get('cpu_ms_per_call_second', '-')}"
        )
    lines.append(
        f"largest N with p99 <= {BAR_P99_MS:g} ms both ways and no frame lost: "
        + ("none" if best is None else str(best))
    )
    return "\n".join(lines)


def main(
    *,
    calls: int = 10,
    duration: float = 20.0,
    json_output: bool = False,
    server_prefix: Sequence[str] = (),
    live_client: str | None = None,
    pin: bool = True,
    sweep: Sequence[int] = (),
    floor: bool = False,
) -> int:
    counts = list(sweep) or [calls]
    if min(counts) < 1 or duration <= 0:
        print("voicebot bench: --calls must be >= 1 and --duration > 0", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    for n in counts:
        result: dict[str, Any] = _run(
            run_bench(
                n,
                duration,
                server_prefix=server_prefix,
                live_client=live_client,
                pin=pin,
                floor=floor,
            )
        )
        results.append(result)
        if not json_output:
            print_report(result)
            print()
    if json_output:
        print(json.dumps(results if sweep else results[0], indent=2))
    elif sweep:
        print(sweep_table(results))
    return 0 if not any(r["failed_calls"] for r in results) else 1


if __name__ == "__main__":
    import argparse

    from app.dev.bench.options import add_options, option_values

    parser = argparse.ArgumentParser(prog="python -m app.dev.bench.runner")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    add_options(parser)
    parser.add_argument(
        "--server-prefix",
        default="",
        help='the server\'s interpreter command, e.g. "python -m cProfile -o server.prof"',
    )
    ns = parser.parse_args()
    sys.exit(
        main(
            calls=ns.calls,
            duration=ns.duration,
            json_output=ns.json,
            server_prefix=ns.server_prefix.split(),
            **option_values(ns),
        )
    )
