"""Prometheus metrics: own registry, every metric exposed at GET /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.metrics import DIRECTIONS, Metrics, metrics_route

NAMES = [
    "voicebot_active_calls",
    "voicebot_calls",
    "voicebot_live_setup_seconds",
    "voicebot_response_latency_seconds",
    "voicebot_bridge_latency_seconds",
    "voicebot_interruptions",
    "voicebot_interruption_clear_seconds",
    "voicebot_live_reconnects",
    "voicebot_tool_duration_seconds",
    "voicebot_tool_errors",
    "voicebot_redis_errors",
    "voicebot_signature_failures",
    "voicebot_malformed_frames",
]


def exercise(m: Metrics) -> None:
    m.call_started()
    m.call_started()
    m.call_ended("caller_hangup")
    m.live_setup(0.4)
    m.response_latency(0.7)
    m.caller_to_model(0.0012)
    m.model_to_caller(0.0031)
    m.interrupted(0.002)
    m.reconnected()
    m.tool_finished("end_call", 0.01, ok=True)
    m.tool_finished("end_call", 0.02, ok=False)
    m.redis_error()
    m.signature_failure("webhook")
    m.malformed_frame()


def test_exposition_contains_every_metric() -> None:
    metrics = Metrics()
    exercise(metrics)
    app = Starlette(routes=[metrics_route(metrics)])

    response = TestClient(app).get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in NAMES:
        assert name in families, name
    text = response.text
    assert "voicebot_active_calls 1.0" in text
    assert 'voicebot_calls_total{reason="caller_hangup"} 1.0' in text
    assert 'voicebot_tool_duration_seconds_count{tool="end_call"} 2.0' in text
    assert 'voicebot_tool_errors_total{tool="end_call"} 1.0' in text
    assert 'voicebot_signature_failures_total{where="webhook"} 1.0' in text
    assert 'voicebot_signature_failures_total{where="stream_token"} 0.0' in text
    assert 'voicebot_bridge_latency_seconds_count{direction="model_to_caller"} 1.0' in text


def test_bridge_latency_is_exported_per_direction_from_the_start() -> None:
    text = Metrics().render().decode()
    for direction in DIRECTIONS:
        assert f'voicebot_bridge_latency_seconds_count{{direction="{direction}"}} 0.0' in text
    # sub-10 ms resolution for what the bridge itself adds
    for le in ("0.001", "0.002", "0.005"):
        assert f'{{direction="caller_to_model",le="{le}"}} 0.0' in text


def test_metrics_satisfy_the_bridge_protocol() -> None:
    from app.call.ports import BridgeMetrics

    metrics: BridgeMetrics = Metrics()  # mypy checks the structural match
    assert callable(metrics.interrupted)


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()  # the global registry would raise "Duplicated timeseries"
    a.interruptions.inc()
    assert "voicebot_interruptions_total 1.0" in a.render().decode()
    assert "voicebot_interruptions_total 0.0" in b.render().decode()
