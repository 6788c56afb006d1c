"""Runs the model's tool calls as tasks, so a slow tool never stalls the call's audio.

Every call ends in exactly one `ToolResult` unless it was cancelled: the Live server
sends `toolCallCancellation` when the caller interrupts, and it has already discarded
those calls, so answering them would only confuse it. Failures (unknown tool, bad
arguments, an exception, a timeout) become `{"error": ...}` responses: the model can
apologise or retry, and the phone call goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic_core import to_jsonable_python
from structlog.typing import FilteringBoundLogger

from tools.context import ToolContext, ToolError
from tools.registry import Scheduled, Tool, ToolRegistry
from tools.schema import ToolArgumentsError


@dataclass(frozen=True, slots=True)
class ToolResult:
    """One finished call, ready to become a `FunctionResponse`."""

    call_id: str
    name: str
    response: dict[str, Any]
    ok: bool
    duration_s: float
    error: str | None = None
    # For NON_BLOCKING tools: INTERRUPT, WHEN_IDLE or SILENT (None: server default).
    scheduling: str | None = None


ResultCallback = Callable[[ToolResult], Awaitable[None]]


class ToolDispatcher:
    """Starts tool calls for one phone call and delivers their results.

    Results go to `on_result` when given, else to the `results` queue.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        context: ToolContext,
        *,
        timeout: float,
        logger: FilteringBoundLogger | None = None,
        on_result: ResultCallback | None = None,
    ) -> None:
        self._registry = registry
        self._context = context
        self._timeout = timeout
        self._log: FilteringBoundLogger = logger or structlog.get_logger("voicebot.tools")
        self._on_result = on_result
        self.results: asyncio.Queue[ToolResult] = asyncio.Queue()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    @property
    def running(self) -> frozenset[str]:
        """Ids of calls still in progress."""
        return frozenset(self._running)

    def start(self, call_id: str, name: str, args: Mapping[str, Any]) -> None:
        """Launch the call as a task and return at once (must run inside the event loop)."""
        if self._closed:
            self._log.warning("tool.call_after_close", call_id=call_id, tool=name)
            return
        if call_id in self._running:
            # Gemini ids are unique per session; a repeat is a bug upstream. Run it
            # anyway, but only the newest task is reachable by `cancel`.
            self._log.warning("tool.duplicate_call_id", call_id=call_id, tool=name)
        task = asyncio.create_task(
            self._run(call_id, name, dict(args)), name=f"tool:{name}:{call_id}"
        )
        self._running[call_id] = task
        task.add_done_callback(lambda t: self._forget(call_id, t))

    def cancel(self, call_ids: Iterable[str]) -> list[str]:
        """Cancel running calls; no result is delivered for them. Returns those cancelled."""
        cancelled = []
        for call_id in call_ids:
            task = self._running.get(call_id)
            if task is not None and task.cancel():
                cancelled.append(call_id)
                self._log.info("tool.cancelled", call_id=call_id)
        return cancelled

    async def aclose(self) -> None:
        """Cancel everything still running (the call hung up) and wait for it to stop."""
        self._closed = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        # Sync tools keep their thread until they return; we stop waiting for them here.
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, call_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(call_id) is task:
            del self._running[call_id]

    async def _run(self, call_id: str, name: str, args: dict[str, Any]) -> None:
        began = time.perf_counter()
        tool = self._registry.get(name)
        scheduling: str | None = tool.scheduling if tool is not None else None
        try:
            response, error, chosen = await self._execute(tool, name, args)
        except asyncio.CancelledError:
            self._log.info(
                "tool.call", call_id=call_id, tool=name, outcome="cancelled",
                duration_s=round(time.perf_counter() - began, 4),
            )  # fmt: skip
            raise
        duration = time.perf_counter() - began
        if chosen is not None and tool is not None and tool.behavior == "NON_BLOCKING":
            scheduling = chosen  # the result's own choice beats the tool's default
        result = ToolResult(call_id, name, response, error is None, duration, error, scheduling)
        log = self._log.info if error is None else self._log.warning
        log("tool.call", call_id=call_id, tool=name, outcome="ok" if error is None else "error",
            error=error, duration_s=round(duration, 4))  # fmt: skip
        await self._deliver(result)

    async def _execute(
        self, tool: Tool[..., Any] | None, name: str, args: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None, str | None]:
        """(response for the model, error text or None, scheduling the result chose)."""
        if tool is None:
            available = ", ".join(self._registry.names()) or "none"
            return _error(f"unknown tool {name!r}; available tools: {available}")
        try:
            kwargs = tool.validate(args)
        except ToolArgumentsError as exc:
            return _error(str(exc))
        timeout = tool.timeout or self._timeout
        try:
            async with asyncio.timeout(timeout):
                value = await tool.invoke(self._context, kwargs)
        except TimeoutError:
            return _error(f"{name} did not finish within {timeout:g} s")
        except ToolError as exc:
            return _error(str(exc))
        except Exception as exc:
            # The edge between the bridge and user code: keep the call alive, say why.
            self._log.exception("tool.failed", tool=name)
            return _error(f"{name} failed unexpectedly ({type(exc).__name__})")
        chosen = None
        if isinstance(value, Scheduled):
            value, chosen = value.result, value.scheduling
        try:
            return {"result": to_jsonable_python(value)}, None, chosen
        except Exception as exc:  # pydantic_core raises PydanticSerializationError
            return _error(f"{name} returned a value that is not JSON ({type(exc).__name__}): {exc}")

    async def _deliver(self, result: ToolResult) -> None:
        if self._on_result is None:
            self.results.put_nowait(result)
            return
        try:
            await self._on_result(result)
        except Exception:
            # The callback is the bridge sending to Live; its failure is the bridge's to
            # see in the log, not a reason to crash this task silently.
            self._log.exception("tool.deliver_failed", call_id=result.call_id, tool=result.name)


def _error(message: str) -> tuple[dict[str, Any], str, None]:
    return {"error": message}, message, None
