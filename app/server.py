"""The Starlette application: routes, lifespan and the services they share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from app.admin.calls import calls_routes
from app.agents.analysis import Analyst
from app.agents.delivery import RecordPoster
from app.agents.hook import load_hook
from app.agents.loader import build_agents
from app.agents.routing import AgentBook
from app.assets import load_clip_8k
from app.call.assembly import call_recorders
from app.call.prewarm import PrewarmPool
from app.call.state import make_state_store
from app.capacity import Capacity, GlobalSlots
from app.console.events import MemoryBus
from app.console.routes import mount_console
from app.errors import RecordingError
from app.live.config import live_options, session_options
from app.live.direct import DirectConnector
from app.live.events import LiveConnector, LiveObserver
from app.logs import suppress_logged
from app.metrics import Metrics, metrics_route, timings_route, watch_loop_lag
from app.recording import repair_recordings
from app.recording.store import CallStore, make_call_store
from app.redis_connect import redis_from_url
from app.redis_events import RedisBus
from app.services import Services
from app.settings import Settings
from app.twilio import webhooks
from app.twilio.media import media_endpoint
from app.twilio.rest import TwilioRest, TwilioRestClient
from app.twilio.stream_tokens import MemoryUsedTokens, RedisUsedTokens, StreamTokens, UsedTokens

log = structlog.get_logger()


def gemini_connector(
    settings: Settings,
    tool_declarations: list[dict[str, Any]],
    observer: LiveObserver | None = None,
) -> LiveConnector:
    """The Live connector chosen by LIVE_CLIENT, both opened with the same options."""
    options = live_options(settings, tool_declarations, observer)
    if settings.live_client == "sdk":
        # Imported here: the SDK (and its import time) is only needed when chosen.
        from app.live.sdk import GeminiConnector

        return GeminiConnector(options)
    return DirectConnector(options)


def analyst(settings: Settings, agents: AgentBook, metrics: Metrics) -> Analyst:
    generator = None
    api_key = settings.secret("gemini_api_key")
    if api_key and any(agent.analysis is not None for agent in agents):
        # Imported here: google-genai's import time only for deployments that use it.
        from app.agents.generate import JsonGenerator

        generator = JsonGenerator(
            api_key,
            base_url=settings.gemini_base_url,
            api_version=settings.gemini_api_version,
            ssl_context=settings.ssl_context(),
            timeout_s=settings.analysis_timeout,
        )
    poster = None
    secret = settings.secret("analysis_webhook_secret")
    if settings.analysis_webhook_url and secret:
        poster = RecordPoster(
            settings.analysis_webhook_url,
            secret,
            backoff_s=settings.analysis_webhook_backoff,
            verify_tls=settings.ssl_context(),
        )
    return Analyst(
        generator,
        default_model=settings.analysis_model,
        poster=poster,
        on_outcome=metrics.agent_outcome,
    )


def twilio_rest(settings: Settings) -> TwilioRest | None:
    token = settings.secret("twilio_auth_token")
    if not (settings.twilio_account_sid and token):
        return None
    return TwilioRestClient(
        settings.twilio_account_sid, token, base_url=settings.twilio_api_base_url
    )


def make_capacity(settings: Settings, redis: Any, metrics: Metrics) -> Capacity:
    """MAX_ACTIVE_CALLS here; GLOBAL_MAX_ACTIVE_CALLS across instances through Redis."""
    slots = None
    if settings.global_max_active_calls and redis is not None:
        slots = GlobalSlots(redis, settings.global_max_active_calls)
    return Capacity(
        max_calls=settings.max_active_calls,
        global_slots=slots,
        busy_message=settings.busy_message,
        overflow_number=settings.overflow_number,
        registry=metrics.registry,
    )


def shared_events(settings: Settings, redis: Any) -> RedisBus | None:
    """With REDIS_URL, the console's live events travel through Redis (every instance's
    console sees every call); without it the console makes its in-process bus."""
    if redis is None or not settings.console_enabled or not settings.secret("admin_token"):
        return None
    return RedisBus(redis, MemoryBus())


def build_services(
    settings: Settings,
    *,
    connector: LiveConnector | None = None,
    rest: TwilioRest | None = None,
    metrics: Metrics | None = None,
) -> Services:
    """Everything the process shares, from settings; tests pass their own peers."""
    agents = build_agents(settings)
    registry = agents.default.registry
    hook = load_hook(settings.call_setup_hook) if settings.call_setup_hook else None
    metrics = metrics or Metrics(raw_samples=settings.bench_timings)
    if connector is None:
        connector = gemini_connector(settings, registry.declarations(), metrics)
    redis: Any = None
    used: UsedTokens = MemoryUsedTokens()
    if settings.redis_url:
        redis = redis_from_url(settings.redis_url, socket_timeout=2.0)
        used = RedisUsedTokens(redis, on_error=metrics.redis_error)
    token = settings.secret("twilio_auth_token")
    return Services(
        settings=settings,
        connector=connector,
        prewarm=PrewarmPool(
            connector,
            timeout=settings.prewarm_timeout,
            greeting=settings.greeting or None,
            on_setup=metrics.live_setup,
        ),
        stream_tokens=StreamTokens(
            token.encode() if token else None, settings.stream_token_ttl, used
        ),
        metrics=metrics,
        capacity=make_capacity(settings, redis, metrics),
        call_store=make_call_store(settings, metrics.registry),
        apology=load_clip_8k("apology"),
        state_store=make_state_store(settings, on_redis_error=metrics.redis_error),
        twilio_rest=rest if rest is not None else twilio_rest(settings),
        tool_registry=registry,
        recorder_factory=call_recorders(settings, agents=agents),
        agents=agents,
        live_options=session_options(settings, registry.declarations()),
        setup_hook=hook,
        analysis=analyst(settings, agents, metrics),
        redis=redis,
        console_bus=shared_events(settings, redis),
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready for new calls: not draining, not at MAX_ACTIVE_CALLS, Redis answers if set."""
    services: Services = request.app.state.services
    checks: dict[str, str] = {"draining": "yes" if services.draining else "no"}
    ready = not services.draining
    if services.capacity.max_calls:
        full = services.capacity.full(services.active_calls.keys())
        checks["capacity"] = "full" if full else "ok"
        ready = ready and not full
    if services.settings.redis_url:
        ok = await services.state_store.ping()
        checks["redis"] = "ok" if ok else "unreachable"
        ready = ready and ok
    return JSONResponse(
        {"status": "ready" if ready else "not ready", **checks},
        status_code=200 if ready else 503,
    )


async def _prune_periodically(
    store: CallStore, retention_days: int, every_s: float = 3600.0
) -> None:
    """Retention: delete recordings older than RECORDING_RETENTION_DAYS, hourly."""
    while True:
        try:
            deleted = await store.prune(retention_days)
            if deleted:
                log.info("recordings.pruned", calls=deleted)
        except Exception as exc:  # the store's I/O edge: log and try again next hour
            log.error("recordings.prune_failed", error=str(exc)[:300])
        await asyncio.sleep(every_s)


def create_app(services: Services) -> Starlette:
    settings = services.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        directory = settings.recordings_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            repaired = await asyncio.to_thread(repair_recordings, directory)
        except OSError as exc:
            # Every call is recorded: a server that cannot record at all does not start.
            why = exc.strerror or type(exc).__name__
            raise RecordingError(f"RECORDINGS_DIR {directory} is not usable: {why}") from exc
        if repaired:
            log.warning("recordings.repaired", files=[p.name for p in repaired])
        # After the repair: calls a crash left in the spool are uploaded (object storage).
        await services.call_store.start()
        if isinstance(services.console_bus, RedisBus):
            await services.console_bus.start()
        background: list[asyncio.Task[None]] = []
        if settings.recording_retention_days:
            prune = _prune_periodically(services.call_store, settings.recording_retention_days)
            background.append(asyncio.create_task(prune))
        if services.metrics.raw is not None:
            background.append(asyncio.create_task(watch_loop_lag(services.metrics.raw)))
        if services.capacity.global_slots is not None:
            beat = services.capacity.run_heartbeat(
                services.active_calls.keys, settings.capacity_heartbeat_seconds
            )
            background.append(asyncio.create_task(beat))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await services.prewarm.aclose()
            await services.analysis.aclose()
            await services.call_store.aclose()
            if isinstance(services.console_bus, RedisBus):
                await services.console_bus.aclose()
            with suppress_logged(log, "server.shutdown_failed", step="state_store"):
                await services.state_store.aclose()
            if services.redis is not None:
                with suppress_logged(log, "server.shutdown_failed", step="redis"):
                    await services.redis.aclose()

    routes: list[BaseRoute] = [
        Route("/twilio/voice", webhooks.voice, methods=["POST"]),
        Route("/twilio/status", webhooks.status, methods=["POST"]),
        WebSocketRoute("/twilio/media", media_endpoint),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        metrics_route(services.metrics),
        timings_route(services.metrics, settings.secret("admin_token")),
        *calls_routes(services.call_store, settings.secret("admin_token")),
    ]
    # The web console exists only with ADMIN_TOKEN set (404 otherwise, as the admin API).
    console = mount_console(services) if settings.console_enabled else None
    if console is not None:
        routes.extend(console.routes)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    app.state.console = console
    return app
