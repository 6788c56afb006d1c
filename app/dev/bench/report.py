"""`voicebot bench`'s report: the summary of one run, its printout and the sweep table.

Every figure is computed from what the run measured; nothing is quoted or asserted.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.dev.bench.load import Sampler
from app.dev.fakes.twilio_caller import CallReport

FRAME_MS = 20
BAR_P99_MS = 10.0  # the limit for "largest N"


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
        print(f"  scenario: {p.get('scenario', 'conversational')}")
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
    share = s.get("event_loop_thread_share")
    if share is not None:
        print(
            f"  of which the event-loop thread {share * 100:.0f}%, other threads "
            f"(recording writers, executors) {(1 - share) * 100:.0f}%"
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
        f = r["floor"]
        ratio = f.get("server_over_floor", 0.0)
        print(
            f"  floor, a bare relay doing the same I/O on {f['stack']} "
            f"({f['workload']}; app/dev/bench/floor.py): {f['cpu_ms_per_call_second']} ms "
            f"per call-second; server / floor = {ratio:.2f}"
        )
    codec = r["codec_ms_per_call_second"]
    print("\nCPU per call-second, timed in this process")
    print(
        f"  codec: {codec['codec_ms']:.3f} ms (in {codec['codec_in_ms']:.3f}, "
        f"out {codec['codec_out_ms']:.3f}); Twilio JSON+base64: {codec['twilio_json_ms']:.3f} ms"
    )
    verdict = "yes" if r["meets_p99_10ms_no_loss"] else "no"
    print(f"\np99 <= {BAR_P99_MS:g} ms both ways and no frame lost: {verdict}")


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
