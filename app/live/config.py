"""`LiveOptions` from the service's settings: AI Studio key or Vertex AI, one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from app.errors import ConfigError
from app.live.events import LiveObserver
from app.live.options import LiveOptions, VertexTarget
from app.settings import Settings


def session_options(
    settings: Settings, tool_declarations: Sequence[Mapping[str, Any]]
) -> LiveOptions:
    """The default agent's session fields (model, voice, prompt, tools), without the
    connection's (key, Vertex target): each call's agent starts from these, and the
    connector adds its own connection fields (`LiveOptions.for_connection`)."""
    return LiveOptions(
        api_key="",
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


def live_options(
    settings: Settings,
    tool_declarations: Sequence[Mapping[str, Any]],
    observer: LiveObserver | None = None,
) -> LiveOptions:
    """What every Live session of this process is opened with.

    Vertex AI (GOOGLE_GENAI_USE_VERTEXAI=true): credentials are loaded here, once, so a
    missing or unreadable key fails at start with a message saying what to set.
    """
    vertex: VertexTarget | None = None
    api_key = settings.secret("gemini_api_key") or ""
    api_version = settings.gemini_api_version
    if settings.google_genai_use_vertexai:
        # Imported here: google-auth's transport is only needed on Vertex AI.
        from app.live.auth import CredentialTokens, load_credentials

        credentials, _ = load_credentials(settings.google_application_credentials)
        assert settings.google_cloud_project and settings.google_cloud_location  # validated
        vertex = VertexTarget(
            project=settings.google_cloud_project,
            location=settings.google_cloud_location,
            tokens=CredentialTokens(credentials),
            credentials=credentials,
        )
        api_version = settings.vertex_api_version
    elif not api_key:
        raise ConfigError(
            "GEMINI_API_KEY is not set (or set GOOGLE_GENAI_USE_VERTEXAI=true with "
            "GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION for Vertex AI; run "
            "`voicebot demo` to try the service offline)"
        )
    return dataclasses.replace(
        session_options(settings, tool_declarations),
        api_key=api_key,
        api_version=api_version,
        vertex=vertex,
        observer=observer,
    )
