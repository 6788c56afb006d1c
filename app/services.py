"""Everything a request handler needs, built once per process and passed explicitly.

`app.server.build_services` makes one from settings; tests pass their own peers to it
(a fake Live connector, a fake Twilio REST client) and hand the result to `create_app`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from app.agents.analysis import Analyst
from app.agents.hook import SetupHook
from app.agents.routing import AgentBook
from app.call.prewarm import PrewarmPool
from app.capacity import Capacity
from app.live.events import LiveConnector
from app.live.options import LiveOptions
from app.metrics import Metrics
from app.recording.store import CallStore
from app.settings import Settings
from app.twilio.rest import TwilioRest
from app.twilio.stream_tokens import StreamTokens
from tools.context import StateStore
from tools.registry import ToolRegistry

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.call.bridge import CallBridge
    from app.call.ports import RecorderFactory
    from app.console.events import EventBus


@dataclass
class Services:
    settings: Settings
    connector: LiveConnector
    prewarm: PrewarmPool
    stream_tokens: StreamTokens
    state_store: StateStore
    tool_registry: ToolRegistry  # the default agent's
    recorder_factory: RecorderFactory  # one recording per call (app.call.assembly)
    # Who answers which number (app/agents), and the connector's own options that each
    # call's agent options are built on.
    agents: AgentBook
    live_options: LiveOptions
    analysis: Analyst  # post-call analysis and record delivery, off the call path
    call_store: CallStore  # finished calls: RECORDINGS_DIR or object storage (RECORDINGS_URL)
    metrics: Metrics = field(default_factory=Metrics)
    apology: NDArray[np.int16] | None = None
    twilio_rest: TwilioRest | None = None  # None: no Twilio credentials configured
    redis: Redis | None = None  # shared by the stream-token ledger; None without REDIS_URL
    # The console's live event bus (app/console/events.py); None when the console is off.
    console_bus: EventBus | None = None
    draining: bool = False
    capacity: Capacity = field(default_factory=Capacity)  # no caps unless configured
    active_calls: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    bridges: dict[str, CallBridge] = field(default_factory=dict)
    setup_hook: SetupHook | None = None  # CALL_SETUP_HOOK

    def observe_signature_failure(self, where: str) -> None:
        self.metrics.signature_failure(where)

    def observe_malformed_frame(self) -> None:
        self.metrics.malformed_frame()
