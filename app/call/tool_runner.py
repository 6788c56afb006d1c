"""The bridge's tools: a dispatcher whose results go back to Live and to the recording."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.call.info import EndReason
from app.call.ports import Recorder
from app.live.events import ToolResponse
from tools.context import ToolContext
from tools.dispatch import ToolDispatcher, ToolResult
from tools.registry import ToolRegistry

if TYPE_CHECKING:
    from app.call.bridge import CallBridge
    from app.services import Services


class BridgeControl:
    """`CallControl` for tools: hang-ups and transfers wait for the goodbye to be heard."""

    def __init__(self, bridge: CallBridge) -> None:
        self._bridge = bridge

    async def end_call(self, reason: str) -> None:
        self._bridge.log.info("tool.end_call", reason=reason[:200])
        await self._bridge.request_exit(EndReason.AGENT_HANGUP)

    async def transfer(self, number: str, announcement: str | None) -> None:
        await self._bridge.request_exit(EndReason.TRANSFERRED, number, announcement)


class BridgeTools:
    """The bridge's `ToolRunner`: a dispatcher whose results go back to Live and the record."""

    def __init__(
        self,
        services: Services,
        bridge: CallBridge,
        recorder: Recorder | None,
        log: Any,
        registry: ToolRegistry | None = None,  # the call's agent's tools (default: Services')
    ) -> None:
        self._services = services
        self._bridge = bridge
        self._recorder = recorder
        self._args: dict[str, tuple[Mapping[str, Any], int]] = {}
        context = ToolContext.for_call(
            services.state_store,
            BridgeControl(bridge),
            call_sid=bridge.call.call_sid,
            stream_sid=bridge.call.stream_sid,
            from_number=bridge.call.from_number or None,
            to_number=bridge.call.to_number or None,
            parameters=bridge.call.parameters,
            log=log,
        )
        self._dispatcher = ToolDispatcher(
            registry or services.tool_registry,
            context,
            timeout=services.settings.tool_timeout,
            logger=log,
            on_result=self._on_result,
        )

    def start(self, call_id: str, name: str, args: Mapping[str, Any]) -> None:
        self._args[call_id] = (args, self._bridge.now_sample())
        self._dispatcher.start(call_id, name, args)

    def cancel(self, call_ids: tuple[str, ...]) -> None:
        self._dispatcher.cancel(call_ids)
        for call_id in call_ids:
            self._args.pop(call_id, None)

    async def aclose(self) -> None:
        await self._dispatcher.aclose()

    async def _on_result(self, result: ToolResult) -> None:
        args, at_sample = self._args.pop(result.call_id, ({}, self._bridge.now_sample()))
        self._services.metrics.tool_finished(result.name, result.duration_s, ok=result.ok)
        if self._recorder is not None:
            self._recorder.tool_call(
                result.call_id,
                result.name,
                args,
                result.response,
                result.ok,
                result.duration_s,
                at_sample,
            )
        await self._bridge.deliver_tool_result(
            ToolResponse(result.call_id, result.name, result.response, result.scheduling)
        )
