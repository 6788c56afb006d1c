"""`voicebot bench` smoke run: it starts its processes, runs calls and reports every field.

Speed is reported by the benchmark, never asserted here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.dev.bench.options import parse_sweep
from app.dev.bench.runner import caller_script, main, sweep_table
from app.dev.bench.scenarios import continuous_caller_script


def test_caller_script_fills_the_duration() -> None:
    audio = caller_script(12.5, offset=3)
    assert audio.size == 12.5 * 8000
    assert not audio[:8000].any()  # listens first
    assert audio.any()


def test_continuous_caller_talks_from_the_start() -> None:
    audio = continuous_caller_script(12.5, offset=3)
    assert audio.size == 12.5 * 8000
    # Speech in every second: the caller never listens for long.
    seconds = audio.reshape(-1, 4000)
    assert all(np.abs(half).max() > 1000 for half in seconds[::2])


def test_continuous_bench_smoke_with_a_two_way_floor(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            calls=2,
            duration=2.5,
            json_output=True,
            floor=True,
            scenario="continuous",
            floor_stack="websockets",
        )
        == 0
    )

    report = json.loads(capsys.readouterr().out)
    assert report["failed_calls"] == 0
    assert report["placement"]["scenario"] == "continuous"
    # Agent audio flowed for the whole call: both directions have samples, no clear.
    latency = report["latency_ms"]
    assert latency["caller_to_model"]["count"] > 0
    assert latency["model_to_caller"]["count"] > 0
    assert report["caller"]["frames_received"] > 0
    assert report["caller"]["clears"] == 0
    floor = report["floor"]
    assert floor["stack"] == "websockets"
    assert floor["workload"].startswith("caller frames up, 20 ms Live audio down")
    assert floor["cpu_ms_per_call_second"] > 0


def test_bench_smoke_reports_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(calls=2, duration=2.5, json_output=True, floor=True) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 2
    assert report["failed_calls"] == 0
    assert report["call_seconds"] > 0
    server = report["server"]
    for key in ("cpu_ms_per_call_second", "idle_rss_mb", "peak_rss_mb", "rss_mb_per_call"):
        assert isinstance(server[key], float | int), key
    latency = report["latency_ms"]
    for name in ("caller_to_model", "model_to_caller", "interrupted_to_clear"):
        assert set(latency[name]) == {"count", "p50_ms", "p95_ms", "p99_ms", "max_ms"}
    # The server's event loop was watched while the calls ran.
    assert latency["server_loop_lag"]["count"] > 0
    # Every caller frame reaches Live, so this direction always has samples.
    assert latency["caller_to_model"]["count"] > 0
    assert latency["first_agent_audio_at_caller"]["count"] == 2
    assert {"late_or_lost_frames", "underruns", "clears"} <= set(report["caller"])
    assert {"codec_ms", "twilio_json_ms"} <= set(report["codec_ms_per_call_second"])
    assert report["machine"]["cpus"]
    assert isinstance(report["meets_p99_10ms_no_loss"], bool)
    assert set(report["cpu_busy_percent"]) == {"server", "fake_live", "callers"}
    assert report["placement"]["live_client"] == "default"
    # The floor relay ran its callers and read its own CPU.
    assert report["floor"]["calls"] == 2
    assert report["floor"]["cpu_ms_per_call_second"] > 0


def test_sweep_counts_are_parsed_and_checked() -> None:
    assert parse_sweep("5, 10,20") == [5, 10, 20]
    with pytest.raises(ValueError, match="call counts"):
        parse_sweep("5,ten")
    with pytest.raises(ValueError, match=">= 1"):
        parse_sweep("0,5")


def _result(calls: int, p99: float | None, lost: int) -> dict[str, object]:
    timing = {"count": 1, "p50_ms": p99, "p95_ms": p99, "p99_ms": p99, "max_ms": p99}
    return {
        "calls": calls,
        "failed_calls": 0,
        "server": {
            "cpu_ms_per_call_second": 20.0,
            "steady_cpu_ms_per_call_second": 19.0,
            "rss_mb_per_call": 0.5,
        },
        "latency_ms": {
            "caller_to_model": timing,
            "model_to_caller": timing,
            "interrupted_to_clear": timing,
        },
        "caller": {"late_or_lost_frames": lost},
        "meets_p99_10ms_no_loss": p99 is not None and p99 <= 10 and lost == 0,
    }


def test_sweep_table_names_the_largest_n_that_met_the_bar() -> None:
    table = sweep_table([_result(5, 2.0, 0), _result(10, 4.0, 0), _result(20, 12.0, 0)])
    assert table.splitlines()[-1].endswith(": 10")
    assert len(table.splitlines()) == 5

    none = sweep_table([_result(20, 3.0, 7)])
    assert none.splitlines()[-1].endswith(": none")
