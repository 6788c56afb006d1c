"""Opening a call's Live session as its agent: hook, variables, setup, greeting.

Pre-warm and the hook: the Live `setup` message carries the system instruction, so it
cannot be sent before the hook has answered. We chose to let the hook bound the
pre-warm: at the webhook one task runs the hook (under CALL_SETUP_HOOK_TIMEOUT), then
opens the session with the rendered prompt and asks for the greeting, while Twilio is
still reading our TwiML and dialling the stream. Without a hook nothing waits.

The hook's outcome and variables are written to the call's state (the tools' state,
in Redis when configured) under `call_setup`. That is the hand-off: the stream (maybe
on another instance) reads it to reconnect with the same prompt, and the call record
notes it. A stream that finds no pre-warmed session (it landed on another instance)
opens one the same way itself, running the hook if the state has no outcome yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from app.agents.agent import Agent
from app.agents.hook import CallFacts, HookOutcome, run_hook
from app.agents.variables import builtin_variables, render
from app.live.events import LiveConnector, LiveSession
from app.live.options import LiveOptions

if TYPE_CHECKING:
    from app.services import Services

log = structlog.get_logger()

SETUP_KEY = "call_setup"
AGENT_PARAM = "agent"
DIRECTION_PARAM = "direction"
# Stream <Parameter>s the service sets itself; others are the webhook URL's query.
RESERVED_PARAMS = frozenset(
    {"call_sid", "stream_token", "from", "to", AGENT_PARAM, DIRECTION_PARAM}
)


class CallConnector:
    """The `LiveConnector` of one call: the process's connector with the call's options.

    Reconnects (goAway, drops) reuse the options the first session was opened with;
    when that session was pre-warmed elsewhere they are rebuilt from `call_setup`.
    """

    def __init__(self, services: Services, agent: Agent, facts: CallFacts) -> None:
        self._services = services
        self.agent = agent
        self.facts = facts
        self.options: LiveOptions | None = None

    @property
    def _connector(self) -> LiveConnector:
        return self._services.connector

    async def connect(
        self,
        *,
        resume_handle: str | None = None,
        options: LiveOptions | None = None,
        history: str | None = None,
    ) -> LiveSession:
        if options is None:
            options = self.options or await self._options_from_state()
        return await self._connector.connect(
            resume_handle=resume_handle, options=options, history=history
        )

    async def open(self) -> LiveSession:
        """Hook (unless already run for this call), seed state, connect, greet.

        The state write overlaps the Live connect: it is only read later (by tools, a
        reconnection, the call record), and nothing here waits on it before connecting.
        """
        services = self._services
        earlier = await self._earlier_setup() if services.setup_hook is not None else None
        seeding: asyncio.Task[None] | None = None
        if earlier is not None:
            extra, variables = earlier
        else:
            timeout = services.settings.call_setup_hook_timeout
            outcome = await run_hook(services.setup_hook, self.facts, timeout)
            if outcome.status != "none":
                services.metrics.agent_outcome("setup_hook", outcome.status)
            variables = {**self.builtins(), **outcome.variables}
            extra = outcome.instructions
            facts = {**variables, SETUP_KEY: setup_state(self.agent, outcome, variables)}
            seeding = asyncio.ensure_future(services.state_store.seed(self.facts.call_sid, facts))
        self.options = self.render_options(extra, variables)
        try:
            session = await self._connector.connect(options=self.options)
        except BaseException:
            if seeding is not None:
                seeding.add_done_callback(_retrieve)  # the connect error is the one to tell
            raise
        try:
            if seeding is not None:
                await seeding
            # The bridge counts only sessions it opened itself; this one (pre-warmed or
            # not) is counted here, as the pre-warm pool counts its own.
            services.metrics.live_setup(session.info.setup_seconds)
            greeting = self.agent.greeting
            if greeting:
                await session.send_text(render(greeting, variables))
        except BaseException:
            await session.close()  # never leave a half-set-up session open
            raise
        return session

    async def _earlier_setup(self) -> tuple[str, dict[str, Any]] | None:
        """The hook's outcome when it already ran for this call (the webhook's instance
        ran it and the stream landed here): it runs once per call."""
        setup = (await self._services.state_store.load(self.facts.call_sid)).get(SETUP_KEY)
        if isinstance(setup, dict) and setup.get("agent") == self.agent.name:
            return _from_setup(setup)
        return None

    def builtins(self) -> dict[str, Any]:
        f = self.facts
        return builtin_variables(
            call_sid=f.call_sid, from_number=f.from_number, to_number=f.to_number,
            direction=f.direction, agent=self.agent.name, timezone=self.agent.timezone,
        )  # fmt: skip

    def render_options(self, extra: str, variables: Mapping[str, Any]) -> LiveOptions:
        instructions = render(self.agent.instructions, variables)
        if extra:
            instructions = f"{instructions}\n\n{extra.strip()}"
        return self.agent.live_options(self._services.live_options, instructions)

    async def _options_from_state(self) -> LiveOptions:
        state = await self._services.state_store.load(self.facts.call_sid)
        setup = state.get(SETUP_KEY)
        if isinstance(setup, dict):
            extra, variables = _from_setup(setup)
        else:  # state lost (store outage): the agent's defaults, with the built-ins
            log.warning("call_setup.missing", call_sid=self.facts.call_sid)
            extra, variables = "", self.builtins()
        self.options = self.render_options(extra, variables)
        return self.options


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("call_setup.seed_failed", error=repr(exc))


def setup_state(agent: Agent, outcome: HookOutcome, variables: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "agent": agent.name,
        "hook": outcome.summary(),
        "instructions": outcome.instructions,
        "variables": dict(variables),
    }


def _from_setup(setup: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    extra = setup.get("instructions")
    variables = setup.get("variables")
    return (
        extra if isinstance(extra, str) else "",
        dict(variables) if isinstance(variables, Mapping) else {},
    )


def facts_from_parameters(call_sid: str, parameters: Mapping[str, str], agent: str) -> CallFacts:
    """A call's facts from its stream <Parameter>s (as the webhook set them)."""
    return CallFacts(
        call_sid=call_sid,
        from_number=parameters.get("from", ""),
        to_number=parameters.get("to", ""),
        direction=parameters.get(DIRECTION_PARAM, "inbound"),
        agent=agent,
        parameters={k: v for k, v in parameters.items() if k not in RESERVED_PARAMS},
    )
