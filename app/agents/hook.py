"""CALL_SETUP_HOOK: caller context at call start (e.g. look the caller up in a CRM).

    # mymodule.py, with CALL_SETUP_HOOK=mymodule:setup
    from app.agents.hook import CallFacts, CallContext

    async def setup(call: CallFacts) -> CallContext:
        customer = await crm.find(call.from_number)
        return CallContext(
            instructions=f"The caller is {customer.name}, a {customer.tier} customer.",
            variables={"customer_name": customer.name},
        )

The hook runs when the voice webhook arrives, under CALL_SETUP_HOOK_TIMEOUT. Whatever
goes wrong (it raises, times out, returns something else) the call goes on with the
agent's defaults; the failure is logged and noted in the call record.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from app.agents.variables import Scalar, clean_variables
from app.errors import ConfigError

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the hook is told about the call."""

    call_sid: str
    from_number: str
    to_number: str
    direction: str  # "inbound" or Twilio's "outbound-api"
    agent: str
    # The voice webhook URL's query parameters (`voicebot call` and your own outbound
    # calls can pass context this way); they also reach the stream and the tools.
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the hook may return: appended instructions and `{variables}`."""

    instructions: str = ""
    variables: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HookOutcome:
    status: Literal["none", "ok", "error", "timeout"]
    instructions: str = ""
    variables: Mapping[str, Scalar] = field(default_factory=dict)
    detail: str = ""
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "seconds": round(self.seconds, 3)}


SetupHook = Callable[[CallFacts], Awaitable[CallContext | Mapping[str, Any] | None]]


def load_hook(spec: str) -> SetupHook:
    """`package.module:function`, which must be an async function (ConfigError if not)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"CALL_SETUP_HOOK: {spec!r} is not module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"CALL_SETUP_HOOK: cannot import {module_name!r}: {exc}") from None
    func = getattr(module, attr, None)
    if func is None:
        raise ConfigError(f"CALL_SETUP_HOOK: {module_name!r} has no {attr!r}")
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"CALL_SETUP_HOOK: {spec} must be an async function")
    hook: SetupHook = func
    return hook


async def run_hook(hook: SetupHook | None, facts: CallFacts, budget_s: float) -> HookOutcome:
    """The hook's answer, or why there is none. Never raises (bar cancellation)."""
    if hook is None:
        return HookOutcome("none")
    began = time.perf_counter()
    bound = log.bind(call_sid=facts.call_sid, agent=facts.agent)
    try:
        async with asyncio.timeout(budget_s):
            answer = await hook(facts)
        outcome = _accept(answer, time.perf_counter() - began)
    except TimeoutError:
        outcome = HookOutcome("timeout", detail=f"no answer within {budget_s:g} s")
    except Exception as exc:  # user code: any failure falls back to the agent's defaults
        bound.warning("setup_hook.failed", error=repr(exc)[:300], exc_info=exc)
        outcome = HookOutcome("error", detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    if outcome.status == "ok":
        bound.info("setup_hook.ok", variables=sorted(outcome.variables), seconds=outcome.seconds)
    else:
        outcome = HookOutcome(outcome.status, detail=outcome.detail,
                              seconds=time.perf_counter() - began)  # fmt: skip
        bound.warning("setup_hook.fallback", status=outcome.status, detail=outcome.detail)
    return outcome


def _accept(answer: object, seconds: float) -> HookOutcome:
    if answer is None:
        return HookOutcome("ok", seconds=seconds)
    if isinstance(answer, CallContext):
        instructions, variables = answer.instructions, answer.variables
    elif isinstance(answer, Mapping):
        unknown = set(answer) - {"instructions", "variables"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} (expected instructions, variables)")
        instructions, variables = answer.get("instructions") or "", answer.get("variables") or {}
    else:
        raise TypeError(f"returned {type(answer).__name__}, expected CallContext or a dict")
    if not isinstance(instructions, str) or not isinstance(variables, Mapping):
        raise TypeError("instructions must be a str and variables a mapping")
    return HookOutcome("ok", instructions, clean_variables(variables), seconds=seconds)
