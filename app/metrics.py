"""Prometheus metrics, on a registry of their own.

A dedicated `CollectorRegistry` per `Metrics` (not prometheus-client's global one) lets
tests and several apps in one process each create their metrics without "Duplicated
timeseries" errors. Served as text at `GET /metrics` by `metrics_route`.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import hmac
import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

NAMESPACE = "voicebot"

# `generate_latest` writes the classic 0.0.4 text format, so say exactly that (it is
# also what prometheus-client's own handler answers to a scraper that asks for nothing
# else); newer releases' CONTENT_TYPE_LATEST names version 1.0.0 instead.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DIRECTIONS = ("caller_to_model", "model_to_caller")
# Where a Twilio request can fail authentication (app.twilio.webhooks / app.twilio.media).
SIGNATURE_PLACES = ("webhook", "media", "stream_token")

# Bridge-added latency is codec + resampler + queueing inside one process: normally
# well under 10 ms, so the buckets are fine there and coarse above.
BRIDGE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
# Caller stops speaking -> first agent audio: model think time dominates (hundreds of ms).
RESPONSE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
SETUP_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
RECONNECT_KINDS = ("resumed", "fresh_session")
# Usage keys (app.live.events.Usage.counts) -> the live_tokens `kind` label.
TOKEN_KINDS = {
    "prompt_tokens": "prompt",
    "response_tokens": "response",
    "thoughts_tokens": "thoughts",
    "tool_use_prompt_tokens": "tool_use_prompt",
    "cached_tokens": "cached",
    "total_tokens": "total",
}
MAX_UNKNOWN_KINDS = 20
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric the service exports.

    Attributes are the prometheus-client objects (and, for the bridge's per-frame and
    per-turn timings, `LeanHistogramCollector`s); the methods are the narrow verbs
    callers use (the bridge's `BridgeMetrics` Protocol among them), so label names
    and values live here only.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, raw_samples: int = 0) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # Opt-in (BENCH_TIMINGS=n): the last n raw samples of each bridge timing, for
        # the benchmark's percentiles (histogram buckets are too coarse for a p99).
        self.raw: RawTimings | None = RawTimings(raw_samples) if raw_samples > 0 else None
        r, ns = self.registry, NAMESPACE
        self.active_calls = Gauge(
            "active_calls", "Calls currently bridged.", namespace=ns, registry=r
        )
        self.calls = Counter(
            "calls", "Calls ended, by end reason.", ["reason"], namespace=ns, registry=r
        )
        self.live_setup_seconds = Histogram(
            "live_setup_seconds",
            "Gemini Live connect + setupComplete time.",
            namespace=ns,
            registry=r,
            buckets=SETUP_BUCKETS,
        )
        # The bridge path's timings use the lean histogram (see LeanHistogram): the
        # per-frame ones are observed 50 times a second per call.
        self.response_latency_seconds = LeanHistogramCollector(
            "response_latency_seconds",
            "End of caller speech to first agent audio sent to Twilio.",
            namespace=ns,
            registry=r,
            buckets=RESPONSE_BUCKETS,
        )
        self.bridge_latency_seconds = LeanHistogramCollector(
            "bridge_latency_seconds",
            "Latency the bridge itself adds to audio, per direction.",
            ["direction"],
            namespace=ns,
            registry=r,
            buckets=BRIDGE_BUCKETS,
        )
        self.interruptions = Counter(
            "interruptions", "Caller barge-ins that cleared agent audio.", namespace=ns, registry=r
        )
        self.interruption_clear_seconds = Histogram(
            "interruption_clear_seconds",
            "Live's interrupted event to Twilio clear sent (barge-in reaction).",
            namespace=ns,
            registry=r,
            buckets=BRIDGE_BUCKETS,
        )
        self.live_reconnects = Counter(
            "live_reconnects",
            "Live session reconnects mid-call, by kind (resumed by handle, or a "
            "fresh_session given the conversation after Live refused the handle).",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        self.live_tokens = Counter(
            "live_tokens",
            "Live usage tokens, by kind (prompt, response, thoughts, tool_use_prompt, "
            "cached; total). Per call: see the call record's usage.",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        self.live_unknown_messages = Counter(
            "live_unknown_messages",
            "Live server messages (top-level fields) of a kind no Live client knows.",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        for kind in RECONNECT_KINDS:
            self.live_reconnects.labels(kind=kind)
        self._unknown_kinds: set[str] = set()
        self.tool_duration_seconds = Histogram(
            "tool_duration_seconds",
            "Tool call run time, by tool.",
            ["tool"],
            namespace=ns,
            registry=r,
            buckets=TOOL_BUCKETS,
        )
        self.tool_errors = Counter(
            "tool_errors",
            "Tool calls that failed or timed out.",
            ["tool"],
            namespace=ns,
            registry=r,
        )
        self.redis_errors = Counter(
            "redis_errors", "Failed state store operations.", namespace=ns, registry=r
        )
        self.signature_failures = Counter(
            "signature_failures",
            "Requests refused for a bad Twilio signature or stream token, by where.",
            ["where"],
            namespace=ns,
            registry=r,
        )
        self.agent_outcomes = Counter(
            "agent_outcomes",
            "Agents' work around calls (app/agents), by kind (setup_hook, analysis, "
            "analysis_webhook) and outcome (ok, error, timeout, delivered, failed).",
            ["kind", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.malformed_frames = Counter(
            "malformed_frames",
            "Media Stream frames that could not be parsed.",
            namespace=ns,
            registry=r,
        )
        # Export both directions at zero from the start so dashboards and alerts see
        # the series before the first call.
        for direction in DIRECTIONS:
            self.bridge_latency_seconds.labels(direction=direction)
        # The per-frame observations use their children directly (`labels()` per call
        # costs a dict lookup and building the key, 50 times a second per call).
        self._caller_to_model = self.bridge_latency_seconds.labels(direction="caller_to_model")
        self._model_to_caller = self.bridge_latency_seconds.labels(direction="model_to_caller")
        self._response_latency = self.response_latency_seconds.labels()
        for where in SIGNATURE_PLACES:
            self.signature_failures.labels(where=where)

    # --- The bridge's view (app.call.bridge.BridgeMetrics) ----------------------------
    def caller_to_model(self, seconds: float) -> None:
        self._caller_to_model.observe(seconds)
        if self.raw is not None:
            self.raw.add("caller_to_model", seconds)

    def model_to_caller(self, seconds: float) -> None:
        self._model_to_caller.observe(seconds)
        if self.raw is not None:
            self.raw.add("model_to_caller", seconds)

    def interrupted(self, clear_delay_s: float) -> None:
        self.interruptions.inc()
        self.interruption_clear_seconds.observe(clear_delay_s)
        if self.raw is not None:
            self.raw.add("interrupted_to_clear", clear_delay_s)

    def response_latency(self, seconds: float) -> None:
        self._response_latency.observe(seconds)

    def reconnected(self, kind: str = "resumed") -> None:
        self.live_reconnects.labels(kind=kind).inc()

    def live_tokens_used(self, counts: Mapping[str, object]) -> None:
        for key, value in counts.items():
            if key in TOKEN_KINDS and isinstance(value, int) and value > 0:
                self.live_tokens.labels(kind=TOKEN_KINDS[key]).inc(value)

    # --- The Live clients' view (app.live.events.LiveObserver) -------------------
    def unknown_message(self, kind: str) -> None:
        # The kind comes from the server: bound the label set.
        if kind not in self._unknown_kinds:
            if len(self._unknown_kinds) >= MAX_UNKNOWN_KINDS:
                kind = "other"
            else:
                self._unknown_kinds.add(kind)
        self.live_unknown_messages.labels(kind=kind).inc()

    # --- Everything else ---------------------------------------------------------
    def call_started(self) -> None:
        self.active_calls.inc()

    def call_ended(self, reason: str) -> None:
        self.active_calls.dec()
        self.calls.labels(reason=reason).inc()

    def live_setup(self, seconds: float) -> None:
        self.live_setup_seconds.observe(seconds)

    def agent_outcome(self, kind: str, outcome: str) -> None:
        self.agent_outcomes.labels(kind=kind, outcome=outcome).inc()

    def tool_finished(self, tool: str, seconds: float, *, ok: bool) -> None:
        self.tool_duration_seconds.labels(tool=tool).observe(seconds)
        if not ok:
            self.tool_errors.labels(tool=tool).inc()

    def redis_error(self) -> None:
        self.redis_errors.inc()

    def signature_failure(self, where: str) -> None:
        self.signature_failures.labels(where=where).inc()

    def malformed_frame(self) -> None:
        self.malformed_frames.inc()

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class LeanHistogram:
    """One histogram series, kept as plain Python numbers: the bridge's hot-path timings.

    prometheus-client's `Histogram.observe` takes a lock per value it touches and walks
    the buckets in a Python loop; here an observation is one `bisect` (C) and two
    additions. The values are exported by `LeanHistogramCollector`, exactly as a
    `Histogram` with the same buckets would export them.

    No lock, because every `observe` (the bridge's coroutines) and every read of the
    counts (`collect`, run by `metrics_route`'s async endpoint) happens on the event
    loop's one thread, so none can interleave with another. That must keep holding:
    `counts[i] += 1` and `sum += value` are read-modify-write steps the GIL does not
    make atomic, so if observations ever come from other threads (`asyncio.to_thread`,
    an executor) or the metrics are scraped from one (prometheus-client's
    `start_http_server`), updates can be lost and a scrape can see the count and the
    sum out of step: add a `threading.Lock` around `observe` and `collect`'s read, or
    go back to `Histogram`. Nor is it aware of prometheus-client's multiprocess mode
    (PROMETHEUS_MULTIPROC_DIR), which the service does not use.
    """

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # finite upper bounds, ascending; +Inf is implicit
        # counts[i] = observations in (bounds[i-1], bounds[i]]; the last slot is +Inf.
        # Not cumulative: `collect` adds them up, once per scrape instead of per value.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()  # the `_created` series, as `Histogram` has it

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, so a value exactly on a bound counts
        # in that bucket (Prometheus' `le` is less-or-equal); above every bound -> +Inf.
        # (A NaN would land in the first bucket where `Histogram` counts it nowhere;
        # these are differences of monotonic clock readings, never NaN.)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class LeanHistogramCollector(Collector):
    """A histogram metric of `LeanHistogram` series, as a prometheus-client collector.

    Stands in for `Histogram` (same constructor shape, `labels`): registered on the
    registry, it renders the same names, labels, buckets and `_created` series.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        namespace: str = "",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = f"{namespace}_{name}" if namespace else name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        bounds = [float(b) for b in buckets]
        if bounds and bounds[-1] == math.inf:
            bounds.pop()  # +Inf is always there
        ascending = all(a < b for a, b in itertools.pairwise(bounds))
        if not bounds or not ascending or not all(map(math.isfinite, bounds)):
            raise ValueError(f"{self.name}: buckets must be ascending and finite")
        self.bounds = tuple(bounds)
        # The `le` label values, spelled the way `Histogram` spells them.
        self._le = [floatToGoString(b) for b in (*bounds, math.inf)]  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], LeanHistogram] = {}
        if not self.labelnames:
            self._children[()] = LeanHistogram(self.bounds)
        if registry is not None:
            registry.register(self)

    def labels(self, **labelvalues: str) -> LeanHistogram:
        """The series for these label values (created at zero on first use).

        With no label names, `labels()` is the one series. Hold on to the result on a
        hot path rather than calling this per observation.
        """
        if set(labelvalues) != set(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}")
        key = tuple(str(labelvalues[n]) for n in self.labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = LeanHistogram(self.bounds)
        return child

    def describe(self) -> Iterable[Metric]:
        # Lets the registry reserve this name and its suffixes (_bucket, _sum, _count,
        # _created), so a clash raises at registration as it would for a `Histogram`.
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        # The 0.0.4 text format (what `generate_latest` writes) has no place for a
        # histogram's `_created` samples, so prometheus-client writes them as a gauge
        # family of their own, `<name>_created`. Yielding that gauge family gives the
        # same text without `Metric.add_sample`, which its docs call internal-only.
        created = GaugeMetricFamily(
            f"{self.name}_created", self.documentation, labels=self.labelnames
        )
        with_created = _created_series_enabled()
        for values, child in self._children.items():
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for le, count in zip(self._le, child.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            histogram.add_metric(values, buckets, child.sum)
            if with_created:
                created.add_metric(values, child.created)
        yield histogram
        if with_created:
            yield created


def _created_series_enabled() -> bool:
    """Whether prometheus-client exports `_created` series now.

    It can be turned off (PROMETHEUS_DISABLE_CREATED_SERIES, `disable_created_metrics()`)
    and only its private `_use_created` says which; a throwaway unregistered `Histogram`
    answers through the public API. Once per scrape: cheap.
    """
    probe = Histogram("probe", "", registry=None, buckets=(1.0,))
    return any(
        sample.name.endswith("_created") for family in probe.collect() for sample in family.samples
    )


class RawTimings:
    """The newest `capacity` raw samples (seconds) per timing name, in memory.

    Off by default; `voicebot bench` turns it on (BENCH_TIMINGS) and reads it through
    `timings_route`. A deque append per sample: cheap enough for the hot path.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._samples: dict[str, collections.deque[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        ring = self._samples.get(name)
        if ring is None:
            ring = self._samples[name] = collections.deque(maxlen=self.capacity)
        ring.append(seconds)

    def snapshot(self, *, reset: bool = False) -> dict[str, list[float]]:
        result = {name: list(ring) for name, ring in self._samples.items()}
        if reset:
            self._samples.clear()
        return result


LOOP_LAG_INTERVAL_S = 0.05


async def watch_loop_lag(raw: RawTimings, interval: float = LOOP_LAG_INTERVAL_S) -> None:
    """Record how late the event loop wakes from each `interval` sleep ("loop_lag").

    Bench mode only (it needs raw timings): a late frame at a caller is the server's
    doing only if the server's loop was late then too. 20 wake-ups a second is noise
    next to the calls' own hundreds.
    """
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        raw.add("loop_lag", max(0.0, loop.time() - before - interval))


def timings_route(metrics: Metrics, admin_token: str | None, path: str = "/bench/timings") -> Route:
    """`GET /bench/timings[?reset=1]`: the raw samples as JSON, behind the admin token.

    Answers 404 unless raw timings are on and an admin token is configured.
    """
    token = admin_token.encode() if admin_token else None

    async def endpoint(request: Request) -> Response:
        if metrics.raw is None or token is None:
            return Response("not found", status_code=404)
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(presented, token):
            return Response("unauthorized", status_code=401)
        reset = request.query_params.get("reset") in ("1", "true")
        body = orjson.dumps(metrics.raw.snapshot(reset=reset))
        return Response(body, media_type="application/json")

    return Route(path, endpoint, methods=["GET"])


def metrics_route(metrics: Metrics, path: str = "/metrics") -> Route:
    """`GET /metrics` in Prometheus' text format."""

    async def endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Route(path, endpoint, methods=["GET"])
