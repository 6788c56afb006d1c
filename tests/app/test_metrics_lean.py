"""The lean histogram behind the bridge's hot-path timings renders as a real one would."""

from __future__ import annotations

import re

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import BRIDGE_BUCKETS, DIRECTIONS, LeanHistogramCollector, Metrics

BOUNDS = (0.001, 0.005, 0.01)
# On a bound, between bounds, below the first, above the last, zero and negative.
VALUES = (0.001, 0.005, 0.01, 0.0004, 0.003, 0.02, 0.0, -0.5, 7.0, 0.001)


def _masked(text: bytes) -> str:
    """The exposition with the `_created` timestamps (creation times) masked."""
    return re.sub(r"(_created(?:\{[^}]*\})?) \S+", r"\1 <time>", text.decode())


def _pair(
    labelnames: tuple[str, ...] = (), buckets: tuple[float, ...] = BOUNDS
) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, LeanHistogramCollector]:
    real_registry, lean_registry = CollectorRegistry(), CollectorRegistry()
    real = Histogram(
        "t_seconds", "Doc.", labelnames, namespace="ns", registry=real_registry, buckets=buckets
    )
    lean = LeanHistogramCollector(
        "t_seconds", "Doc.", labelnames, namespace="ns", registry=lean_registry, buckets=buckets
    )
    return real_registry, real, lean_registry, lean


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    child = LeanHistogramCollector("t", "Doc.", buckets=BOUNDS).labels()

    for value in (0.001, 0.005, 0.01):  # exactly on each bound: le is less-or-equal
        child.observe(value)
    assert child.counts == [1, 1, 1, 0]

    child.observe(0.0010000001)  # just above a bound: the next bucket
    child.observe(0.0100001)  # above every bound: +Inf only
    child.observe(-1.0)  # below every bound (as Histogram does): the first
    assert child.counts == [2, 2, 1, 1]


def test_sum_and_count() -> None:
    _, _, registry, lean = _pair()
    child = lean.labels()
    for value in VALUES:
        child.observe(value)

    assert child.sum == pytest.approx(sum(VALUES))
    assert registry.get_sample_value("ns_t_seconds_count") == len(VALUES)
    assert registry.get_sample_value("ns_t_seconds_sum") == pytest.approx(sum(VALUES))
    assert registry.get_sample_value("ns_t_seconds_bucket", {"le": "0.001"}) == 5  # cumulative
    assert registry.get_sample_value("ns_t_seconds_bucket", {"le": "+Inf"}) == len(VALUES)


@pytest.mark.parametrize("labelnames", [(), ("direction",)])
def test_renders_what_a_prometheus_histogram_renders(labelnames: tuple[str, ...]) -> None:
    real_registry, real, lean_registry, lean = _pair(labelnames, BRIDGE_BUCKETS)
    label_sets = [{"direction": d} for d in DIRECTIONS] if labelnames else [{}]
    # Both series exist (at zero) from the start, then see the same values.
    real_children = [real.labels(**labels) if labels else real for labels in label_sets]
    lean_children = [lean.labels(**labels) for labels in label_sets]
    for i, value in enumerate(VALUES):
        real_children[i % len(label_sets)].observe(value)
        lean_children[i % len(label_sets)].observe(value)

    real_text, lean_text = generate_latest(real_registry), generate_latest(lean_registry)

    assert _masked(lean_text) == _masked(real_text)
    families = {f.name: f for f in text_string_to_metric_families(lean_text.decode())}
    assert families["ns_t_seconds"].type == "histogram"
    real_families = {f.name: f for f in text_string_to_metric_families(real_text.decode())}
    assert families.keys() == real_families.keys()
    for name, family in families.items():
        if name.endswith("_created"):
            continue  # creation times differ by the microseconds between the two
        assert family.samples == real_families[name].samples, name


def test_created_series_follow_prometheus_client() -> None:
    _, _, registry, lean = _pair()
    lean.labels().observe(0.002)
    assert registry.get_sample_value("ns_t_seconds_created") is not None

    prometheus_client.disable_created_metrics()
    try:
        assert "_created" not in generate_latest(registry).decode()
    finally:
        prometheus_client.enable_created_metrics()


def test_the_registry_reserves_the_name() -> None:
    registry = CollectorRegistry()
    LeanHistogramCollector("t_seconds", "Doc.", buckets=BOUNDS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("t_seconds", "Doc.", registry=registry)


def test_buckets_are_checked() -> None:
    with pytest.raises(ValueError):
        LeanHistogramCollector("t", "Doc.", buckets=(0.5, 0.1))
    with pytest.raises(ValueError):
        LeanHistogramCollector("t", "Doc.", buckets=())
    # A trailing +Inf is accepted, as Histogram accepts it, and not doubled.
    child = LeanHistogramCollector("t", "Doc.", buckets=(0.1, float("inf"))).labels()
    assert child.counts == [0, 0]


def test_labels_must_match() -> None:
    lean = LeanHistogramCollector("t", "Doc.", ["direction"], buckets=BOUNDS)
    with pytest.raises(ValueError):
        lean.labels()
    with pytest.raises(ValueError):
        lean.labels(direction="x", other="y")
    assert lean.labels(direction="x") is lean.labels(direction="x")


def test_metrics_bridge_timings_land_in_the_exposition() -> None:
    metrics = Metrics()
    metrics.caller_to_model(0.002)  # on a bound
    metrics.model_to_caller(0.3)
    metrics.response_latency(0.7)
    text = metrics.render().decode()

    assert 'voicebot_bridge_latency_seconds_bucket{direction="caller_to_model",le="0.002"} 1.0' in (
        text
    )
    assert 'voicebot_bridge_latency_seconds_bucket{direction="caller_to_model",le="0.001"} 0.0' in (
        text
    )
    assert 'voicebot_bridge_latency_seconds_bucket{direction="model_to_caller",le="1.0"} 1.0' in (
        text
    )
    assert 'voicebot_response_latency_seconds_bucket{le="0.8"} 1.0' in text
    assert "voicebot_response_latency_seconds_sum 0.7" in text
    for direction in DIRECTIONS:
        assert f'voicebot_bridge_latency_seconds_created{{direction="{direction}"}}' in text
