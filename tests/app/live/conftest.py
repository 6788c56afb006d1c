"""Both Live clients: a test that takes `client` runs against each (one contract)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.live.direct import DirectConnector
from app.live.events import LiveConnector
from app.live.options import LiveOptions
from app.live.sdk import GeminiConnector

Client = Callable[[LiveOptions], LiveConnector]
CLIENTS: dict[str, Client] = {"direct": DirectConnector, "sdk": GeminiConnector}


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Client:
    """A Live connector class: the direct client, then the google-genai one."""
    return CLIENTS[request.param]
