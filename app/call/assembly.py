"""One call, assembled and finished in one place.

A transport checks its own socket (Twilio's signed Media Stream today; a web call later),
then hands `run_call` what it knows of the call (`CallInfo`), the socket's outbound side
(`TwilioSink`) and its inbound messages. Everything else happens here, in this order:
the recording (from `services.recorder_factory`), the bridge with its tools and seeded
state, registration in `Services` (drain, admin) and metrics; then the call; then the
recording closed and the call unregistered. The transport closes its socket last, once
the call is fully wound down.

Seams for what comes next: wrap `services.recorder_factory` to tee a call's events (a
console); another transport calls `run_call`. The call's agent (app/agents) is chosen
from its token-covered stream parameters: its tools, Live options, keypad handling,
whether it is recorded, and its post-call analysis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from app.agents.agent import Agent
from app.agents.calls import agent_for, call_connector, note_call_setup
from app.agents.inputs import agent_inputs
from app.agents.routing import AgentBook
from app.agents.session import DIRECTION_PARAM, CallConnector
from app.call.bridge import CallBridge
from app.call.info import BridgeConfig, CallInfo, EndReason
from app.call.ports import CallRecording, RecorderFactory, TwilioSink
from app.call.tool_runner import BridgeTools
from app.live.events import LiveSession
from app.recording import CallRecorder
from app.recording.writer import Opener, open_new_file
from app.services import Services
from app.settings import Settings
from app.twilio.stream_tokens import TOKEN_PARAM
from telephony.messages import Start, TwilioMessage
from telephony.twiml import dial_twiml


def call_info_from_start(start: Start) -> CallInfo:
    """The call as Twilio's `start` message describes it (the stream token left out)."""
    params = start.custom_parameters
    return CallInfo(
        call_sid=start.call_sid,
        stream_sid=start.stream_sid,
        account_sid=start.account_sid,
        from_number=params.get("from", ""),
        to_number=params.get("to", ""),
        parameters={k: v for k, v in params.items() if k != TOKEN_PARAM},
        # Twilio's Direction as the webhook saw it ("inbound", "outbound-api"), or "web"
        # for a console call; token-covered like every stream parameter.
        direction=params.get(DIRECTION_PARAM, "inbound"),
    )


def call_recorders(
    settings: Settings, *, opener: Opener = open_new_file, agents: AgentBook | None = None
) -> RecorderFactory:
    """The production recorder factory: a WAV and a call record per call, in
    RECORDINGS_DIR. `opener` is the seam for disk faults in tests; with `agents` the
    record names the call's agent, its model and voice."""

    def make(call: CallInfo) -> CallRecording:
        agent = agent_for(agents, call) if agents is not None else None
        return CallRecorder(
            settings.recordings_dir,
            call.call_sid,
            meta={
                "stream_sid": call.stream_sid,
                "from": call.from_number,
                "to": call.to_number,
                "agent": agent.name if agent else None,
                "direction": call.direction,
                "model": agent.model if agent else settings.gemini_model,
                "voice": agent.voice if agent else settings.gemini_voice,
            },
            opener=opener,
        )

    return make


def bridge_config(settings: Settings, call: CallInfo) -> BridgeConfig:
    """The bridge's settings for this call. No greeting: the call's agent asks for its
    own when its session opens (app.agents.session.CallConnector.open)."""
    return BridgeConfig(
        greeting=None,
        hangup_fallback_seconds=settings.hangup_fallback_seconds,
        max_reconnects=settings.live_max_reconnects,
    )


async def run_call(
    services: Services,
    call: CallInfo,
    sink: TwilioSink,
    messages: AsyncIterator[TwilioMessage],
    *,
    log: Any,
    received_at: Callable[[], float] | None = None,
) -> EndReason:
    """Run one call from its first message to its saved recording; returns why it ended.

    `received_at`: see `CallBridge.run`. Cancellation (the drain's last resort) still
    closes the recording and unregisters the call.
    """
    connector = call_connector(services, call, log)
    agent = connector.agent
    recorder = services.recorder_factory(call) if agent.record else None
    try:
        bridge = await _build_bridge(services, call, sink, log, recorder, connector)
    except BaseException:
        if recorder is not None:
            await recorder.aclose(EndReason.ERROR.value)
        raise
    log.info("call.started", prewarmed=bridge.prewarmed, agent=agent.name)
    reason = EndReason.ERROR
    try:
        reason = await bridge.run(messages, received_at=received_at)
    finally:
        # When cancelled, `run` raised but recorded why.
        reason = bridge.end_reason or reason
        await _finish(services, bridge, recorder, reason, log, agent)
    return reason


async def _build_bridge(
    services: Services,
    call: CallInfo,
    sink: TwilioSink,
    log: Any,
    recorder: CallRecording | None,
    connector: CallConnector,
) -> CallBridge:
    web = call.direction == "web"  # no Twilio call: hanging up is closing the socket
    rest = None if web else services.twilio_rest

    async def hangup(call_sid: str) -> None:
        if rest is not None:
            await rest.hangup(call_sid)

    async def transfer(call_sid: str, number: str, announcement: str | None) -> None:
        if web:
            # Nobody can be dialled from a browser; the call ends as "transferred".
            log.info("webcall.transfer_not_dialled", number=number)
            return
        if rest is None:
            raise RuntimeError("transfer needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        await rest.redirect(call_sid, dial_twiml(number, announcement))

    # The webhook's pre-warmed session, or (the stream landed on another instance) one
    # the agent opens now the same way: hook, prompt, greeting.
    prewarmed: Awaitable[LiveSession] | None = services.prewarm.take(call.call_sid)
    bridge = CallBridge(
        call,
        sink,
        connector,
        config=bridge_config(services.settings, call),
        prewarmed=prewarmed or connector.open(),
        recorder=recorder,
        metrics=services.metrics,
        apology=services.apology,
        hangup=hangup if rest is not None else None,
        transfer=transfer,
        log=log,
    )
    registry = connector.agent.registry
    if registry.names():
        await services.state_store.seed(
            call.call_sid,
            {
                "call_sid": call.call_sid,
                "from_number": call.from_number,
                "to_number": call.to_number,
                "parameters": dict(call.parameters),
            },
        )
        bridge.tools = BridgeTools(services, bridge, recorder, log, registry)
    agent_inputs(bridge, connector.agent, log)
    services.bridges[call.call_sid] = bridge
    task = asyncio.current_task()
    if task is not None:
        services.active_calls[call.call_sid] = task
    services.metrics.call_started()
    return bridge


async def _finish(
    services: Services,
    bridge: CallBridge,
    recorder: CallRecording | None,
    reason: EndReason,
    log: Any,
    agent: Agent,
) -> None:
    if recorder is not None:  # None: the agent has record = false
        await note_call_setup(services, bridge.call.call_sid, recorder)
        recorder.advance(bridge.now_sample())
        result = await recorder.aclose(reason.value)
        log.info("call.recorded", wav=str(result.wav_path), error=result.error)
        analysed = services.analysis.submit(agent, result.record_path)  # off the call path
        # Object storage: uploaded now, and the record again once the analysis is in it.
        services.call_store.call_finished(bridge.call.call_sid, after=analysed)
    services.bridges.pop(bridge.call.call_sid, None)
    services.active_calls.pop(bridge.call.call_sid, None)
    services.metrics.call_ended(reason.value)
    services.capacity.call_ended(bridge.call.call_sid)
    log.info("call.ended", reason=reason.value, **bridge.stats.as_log_fields())
