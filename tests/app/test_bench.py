"""`voicebot bench` smoke run: it starts its processes, runs calls and reports every field.

Speed is reported by the benchmark, never asserted here.
"""

from __future__ import annotations

import json

import pytest

from app.bench import caller_script, main


def test_caller_script_fills_the_duration() -> None:
    audio = caller_script(12.5, offset=3)
    assert audio.size == 12.5 * 8000
    assert not audio[:8000].any()  # listens first
    assert audio.any()


def test_bench_smoke_reports_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(calls=2, duration=2.5, json_output=True) == 0

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
    # Every caller frame reaches Live, so this direction always has samples.
    assert latency["caller_to_model"]["count"] > 0
    assert latency["first_agent_audio_at_caller"]["count"] == 2
    assert {"late_or_lost_frames", "underruns", "clears"} <= set(report["caller"])
    assert {"codec_ms", "twilio_json_ms"} <= set(report["codec_ms_per_call_second"])
    assert report["machine"]["cpus"]
    assert isinstance(report["meets_p99_10ms_no_loss"], bool)
