"""The stream's side of agents: which agent a stream belongs to, and its setup notes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.agents.session import AGENT_PARAM, SETUP_KEY, CallConnector, facts_from_parameters

if TYPE_CHECKING:
    from app.agents.agent import Agent
    from app.agents.routing import AgentBook
    from app.call.info import CallInfo
    from app.call.ports import Recorder
    from app.services import Services


def agent_for(agents: AgentBook, call: CallInfo) -> Agent:
    """The agent named in the stream's (token-covered) `agent` parameter.

    An unknown name (the agents file changed between the webhook and the stream, or
    they ran on instances with different files) falls back to routing by number.
    """
    params = call.parameters
    agent = agents.get(params.get(AGENT_PARAM))
    if agent is None:
        agent = agents.for_call(
            to=call.to_number, from_=call.from_number,
            direction=params.get("direction", "inbound"), requested=None,
        )  # fmt: skip
    return agent


def call_connector(services: Services, call: CallInfo, log: Any) -> CallConnector:
    agent = agent_for(services.agents, call)
    requested = call.parameters.get(AGENT_PARAM)
    if requested and requested != agent.name:
        log.warning("agent.unknown", requested=requested[:64], using=agent.name)
    facts = facts_from_parameters(call.call_sid, call.parameters, agent.name)
    return CallConnector(services, agent, facts)


async def note_call_setup(services: Services, call_sid: str, recorder: Recorder) -> None:
    """Put the setup hook's outcome in the call record (a failure is never silent)."""
    setup = (await services.state_store.load(call_sid)).get(SETUP_KEY)
    if not isinstance(setup, dict):
        return
    hook = setup.get("hook")
    if isinstance(hook, dict) and hook.get("status") not in (None, "none"):
        detail = f"{hook.get('status')}: {hook.get('detail') or 'ok'} ({hook.get('seconds')} s)"
        recorder.note("setup_hook", detail, 0)
