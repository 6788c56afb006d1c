"""CALL_SETUP_HOOK functions for tests (`tests.app.agents.sample_hooks:enrich`, ...)."""

from __future__ import annotations

import asyncio

from app.agents.hook import CallContext, CallFacts

SEEN: list[CallFacts] = []


async def enrich(call: CallFacts) -> CallContext:
    SEEN.append(call)
    return CallContext(
        instructions=f"The caller is Ada Lovelace, a gold customer (agent {call.agent}).",
        variables={"customer_name": "Ada", "tier": "gold"},
    )


async def as_dict(call: CallFacts) -> dict[str, object]:
    return {"variables": {"customer_name": "Grace"}}


async def explode(call: CallFacts) -> CallContext:
    raise RuntimeError("CRM is down")


async def slow(call: CallFacts) -> CallContext:
    await asyncio.sleep(30)
    return CallContext(instructions="never used")


def not_async(call: CallFacts) -> None:
    return None
