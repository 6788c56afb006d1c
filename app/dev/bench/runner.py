"""`voicebot bench`: what a call costs and what the bridge adds, measured on this machine.

Three processes, so the server's own CPU and memory can be read apart from the load
(`app.dev.bench.stack`):
- the real server (`python -m app.cli serve`, uvicorn + Starlette), with raw bridge
  timings on (`BENCH_TIMINGS`, read at `GET /bench/timings` behind `ADMIN_TOKEN`);
- the fake Live server (`python -m app.dev.fakes.live`, TLS, the real Live wire protocol),
  playing one of the scenarios in `app.dev.bench.scenarios` (conversational turns with
  barge-in, or continuous two-way speech);
- this process: N Twilio-faithful callers (`app.dev.bench.load`).

Reported (`app.dev.bench.report`; every figure is measured when it runs):
- server CPU seconds per call-second (/proc/PID/stat utime+stime), whole run and while
  all calls are up; memory per call = (peak VmRSS under load - idle VmRSS after a
  warm-up call) / N;
- bridge-added latency, p50/p95/p99/max, timed inside the server at these points:
  caller->model: frame off the Twilio socket -> its audio written to the Live socket;
  model->caller: Live audio event in hand -> its frames written to Twilio (chunks that
  pacing lets out at once; see `CallBridge._on_agent_audio`);
  interrupted->clear: Live's `interrupted` -> `clear` written to Twilio;
- stream start -> first agent audio heard at the caller (20 ms ticks);
- frames late or lost at the caller: gaps in paced playback after audio began;
- the codec's and the message path's CPU per call-second (timed in this process);
- with `--floor`, the same workload through a bare relay on the same stack
  (`app.dev.bench.floor`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.dev.bench.floor import run_floor
from app.dev.bench.load import codec_costs, merge, ramp_seconds, ramp_timings, run_calls
from app.dev.bench.report import print_report, summarize, sweep_table
from app.dev.bench.scenarios import SCENARIOS, caller_script
from app.dev.bench.stack import Placement, ProcStat, bench_stack, fetch_timings

__all__ = ["caller_script", "main", "run_bench", "sweep_table"]

WARMUP_SECONDS = 2.0


async def run_bench(
    calls: int,
    duration: float,
    *,
    warmup_seconds: float = WARMUP_SECONDS,
    server_prefix: Sequence[str] = (),
    live_client: str | None = None,
    pin: bool = True,
    floor: bool = False,
    scenario: str = "conversational",
    floor_stack: str = "uvicorn",
    floor_prefix: Sequence[str] = (),
) -> dict[str, Any]:
    plan = SCENARIOS[scenario]
    codec = await asyncio.to_thread(codec_costs)
    with tempfile.TemporaryDirectory(prefix="voicebot-bench-") as tmp:
        async with bench_stack(
            Path(tmp), server_prefix, scenario=plan.fake_live, live_client=live_client, pin=pin
        ) as stack:
            if warmup_seconds > 0:
                await run_calls(stack, 1, warmup_seconds, plan.caller)
            await asyncio.sleep(0.5)  # let the warm-up call's recording close
            await fetch_timings(stack, reset=True)
            idle_rss = stack.server.rss_bytes()
            loop = asyncio.get_running_loop()
            started = loop.time()
            cpu_before = stack.server.cpu_seconds()
            loop_before = stack.server.main_thread_cpu_seconds()
            load_before = (stack.fake.cpu_seconds(), time.process_time())
            ramp = asyncio.create_task(ramp_timings(stack, ramp_seconds(calls, duration)))
            try:
                reports, sampler = await run_calls(stack, calls, duration, plan.caller)
            except BaseException:
                ramp.cancel()  # the run failed: nothing will read the ramp's timings
                raise
            cpu_after = stack.server.cpu_seconds()
            loop_after = stack.server.main_thread_cpu_seconds()
            load_after = (stack.fake.cpu_seconds(), time.process_time())
            wall = loop.time() - started
            steady = await fetch_timings(stack, reset=True)
            ramp_part = await ramp
            timings = merge(ramp_part, steady)  # bridge timings: the whole run
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
        stack.placement | {"scenario": scenario},
        busy={
            # Share of one CPU each process kept busy over the run: when the load side
            # nears 100% per CPU it has, late frames are the load generator's, not ours.
            "server": (cpu_after - cpu_before) / wall,
            "fake_live": (load_after[0] - load_before[0]) / wall,
            "callers": (load_after[1] - load_before[1]) / wall,
        },
    )
    used = cpu_after - cpu_before
    # Where the server's CPU went: its event-loop thread, or the others (mainly each
    # call's recording writer).
    result["server"]["event_loop_thread_share"] = (
        round((loop_after - loop_before) / used, 3) if used > 0 else None
    )
    if floor:
        with tempfile.TemporaryDirectory(prefix="voicebot-floor-") as tmp:
            placement = Placement(pin)
            try:
                result["floor"] = await run_floor(
                    calls,
                    duration,
                    Path(tmp),
                    placement,
                    lambda pid: ProcStat(pid).cpu_seconds(),
                    two_way=scenario == "continuous",
                    stack=floor_stack,
                    prefix=floor_prefix,
                )
            finally:
                placement.release()
        floor_cpu = result["floor"]["cpu_ms_per_call_second"]
        server_cpu = result["server"]["cpu_ms_per_call_second"]
        if floor_cpu and server_cpu is not None:
            result["floor"]["server_over_floor"] = round(server_cpu / floor_cpu, 3)
    return result


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    # The callers are the load generator: the faster loop keeps them on time.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


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
    scenario: str = "conversational",
    floor_stack: str = "uvicorn",
    floor_prefix: Sequence[str] = (),
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
                scenario=scenario,
                floor_stack=floor_stack,
                floor_prefix=floor_prefix,
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
    parser.add_argument(
        "--floor-prefix",
        default="",
        help="the same for the floor's relay (with --floor), to profile it alike",
    )
    ns = parser.parse_args()
    sys.exit(
        main(
            calls=ns.calls,
            duration=ns.duration,
            json_output=ns.json,
            server_prefix=ns.server_prefix.split(),
            floor_prefix=ns.floor_prefix.split(),
            **option_values(ns),
        )
    )
