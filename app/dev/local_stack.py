"""The whole product on one machine: the real server, and the fake Live server unless
real Gemini is configured. Used by `voicebot demo`, `voicebot bench` and the tests.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from app.dev.fakes.live.scenario import Scenario
from app.dev.fakes.live.server import FakeLiveServer
from app.dev.local_server import free_port, serving
from app.server import build_services, create_app
from app.services import Services
from app.settings import Settings, load_settings

FAKE_API_KEY = "fake-live-key"


@dataclass
class LocalStack:
    base_url: str
    settings: Settings
    services: Services
    fake: FakeLiveServer | None
    auth_token: str

    @property
    def uses_real_gemini(self) -> bool:
        return self.fake is None


@contextlib.asynccontextmanager
async def local_stack(
    scenario: Scenario | None = None,
    *,
    real_gemini: bool = False,
    env_file: str | None = None,
    port: int | None = None,
    **overrides: Any,
) -> AsyncIterator[LocalStack]:
    """Start the stack; `overrides` are Settings fields (e.g. recordings_dir=...)."""
    port = port or free_port()
    auth_token = overrides.pop("twilio_auth_token", None) or secrets.token_hex(16)
    base = {
        "public_base_url": f"http://127.0.0.1:{port}",
        "twilio_auth_token": auth_token,
        "allow_unsigned": False,
    }
    async with contextlib.AsyncExitStack() as stack:
        fake: FakeLiveServer | None = None
        if not real_gemini:
            fake = await stack.enter_async_context(FakeLiveServer(scenario or Scenario()))
            base |= {
                "gemini_api_key": overrides.pop("gemini_api_key", FAKE_API_KEY),
                "gemini_base_url": fake.base_url,
                # The fake's throwaway CA, trusted the way a user trusts a private CA.
                "ssl_cert_file": fake.ca_pem_path,
            }
        settings = load_settings(env_file=env_file, **(base | overrides))
        services = build_services(settings)
        base_url = await stack.enter_async_context(serving(create_app(services), port))
        yield LocalStack(base_url, settings, services, fake, auth_token)
