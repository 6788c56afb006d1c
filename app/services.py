"""Everything a request handler needs, built once per process and passed explicitly.

Tests build a `Services` with fakes (a fake Live connector, a fake Twilio REST client,
a memory state store) and hand it to `create_app`; nothing is patched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.live.events import LiveConnector
from app.metrics import Metrics
from app.prewarm import PrewarmPool
from app.settings import Settings
from app.stream_tokens import StreamTokens


@dataclass
class Services:
    settings: Settings
    connector: LiveConnector
    prewarm: PrewarmPool
    stream_tokens: StreamTokens
    metrics: Metrics = field(default_factory=Metrics)
    apology: NDArray[np.int16] | None = None
    state_store: Any = None
    twilio_rest: Any = None
    tool_registry: Any = None
    redis: Any = None
    draining: bool = False
    active_calls: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    bridges: dict[str, Any] = field(default_factory=dict)

    def observe_signature_failure(self, where: str) -> None:
        self.metrics.signature_failure(where)

    def observe_malformed_frame(self) -> None:
        self.metrics.malformed_frame()
