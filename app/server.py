"""The Starlette application: routes, lifespan and the services they share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from app import webhooks
from app.assets import load_clip_8k
from app.errors import ConfigError
from app.live.adapter import GeminiConnector, LiveOptions
from app.live.events import LiveConnector
from app.media import media_endpoint
from app.prewarm import PrewarmPool
from app.services import Services
from app.settings import Settings
from app.stream_tokens import MemoryUsedTokens, StreamTokens


def gemini_connector(
    settings: Settings, tool_declarations: list[dict[str, object]]
) -> GeminiConnector:
    api_key = settings.secret("gemini_api_key")
    if not api_key:
        raise ConfigError(
            "GEMINI_API_KEY is not set (run `voicebot demo` to try the service offline)"
        )
    return GeminiConnector(
        LiveOptions(
            api_key=api_key,
            model=settings.gemini_model,
            voice=settings.gemini_voice,
            instructions=settings.instructions,
            api_version=settings.gemini_api_version,
            base_url=settings.gemini_base_url,
            tool_declarations=tool_declarations,
            ssl_context=settings.ssl_context(),
            ping_interval=settings.live_ping_interval,
            ping_timeout=settings.live_ping_timeout,
            connect_timeout=settings.live_connect_timeout,
        )
    )


def build_services(settings: Settings, *, connector: LiveConnector | None = None) -> Services:
    if connector is None:
        connector = gemini_connector(settings, [])
    token = settings.secret("twilio_auth_token")
    return Services(
        settings=settings,
        connector=connector,
        prewarm=PrewarmPool(
            connector, timeout=settings.prewarm_timeout, greeting=settings.greeting or None
        ),
        stream_tokens=StreamTokens(
            token.encode() if token else None, settings.stream_token_ttl, MemoryUsedTokens()
        ),
        apology=load_clip_8k("apology"),
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(services: Services) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await services.prewarm.aclose()

    app = Starlette(
        routes=[
            Route("/twilio/voice", webhooks.voice, methods=["POST"]),
            Route("/twilio/status", webhooks.status, methods=["POST"]),
            WebSocketRoute("/twilio/media", media_endpoint),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
