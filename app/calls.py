"""Assembling one call: its bridge, recorder, tools and metrics; and finishing it."""

from __future__ import annotations

import asyncio
from typing import Any

from app.bridge import BridgeConfig, CallBridge, CallInfo, EndReason, TwilioSink
from app.services import Services


async def build_bridge(
    services: Services, call: CallInfo, sink: TwilioSink, log: Any
) -> CallBridge:
    settings = services.settings
    config = BridgeConfig(
        greeting=settings.greeting or None,
        hangup_fallback_seconds=settings.hangup_fallback_seconds,
        max_reconnects=settings.live_max_reconnects,
    )
    bridge = CallBridge(
        call,
        sink,
        services.connector,
        config=config,
        prewarmed=services.prewarm.take(call.call_sid),
        apology=services.apology,
        log=log,
    )
    services.bridges[call.call_sid] = bridge
    task = asyncio.current_task()
    if task is not None:
        services.active_calls[call.call_sid] = task
    return bridge


async def finish_call(services: Services, bridge: CallBridge, reason: EndReason, log: Any) -> None:
    services.bridges.pop(bridge.call.call_sid, None)
    services.active_calls.pop(bridge.call.call_sid, None)
    log.info("call.ended", reason=reason.value, **bridge.stats)
