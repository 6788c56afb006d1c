"""What a tool sees of its call: identifiers, per-call state, call control, a logger.

Tools never see sockets, Redis or the bridge. The bridge implements `CallControl`;
`app.call.state` implements `StateStore`. Both arrive through `ToolContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import structlog
from structlog.typing import FilteringBoundLogger


class ToolError(Exception):
    """Raise from a tool to tell the model what went wrong; the message is sent verbatim.

    Any other exception reaches the model only as "failed unexpectedly" (and the log).
    """


class StateStore(Protocol):
    """Per-call state keyed by call sid; every value is JSON (str, number, list, dict...).

    Implementations must not raise into a tool for a transient outage; they raise only
    when used wrongly (a value that is not JSON, an empty call sid).
    """

    async def load(self, call_sid: str) -> dict[str, Any]:
        """Every field of the call's state (an empty dict for an unknown call)."""
        ...

    async def set_fields(self, call_sid: str, mapping: Mapping[str, Any]) -> None:
        """Write fields, leaving the others alone."""
        ...

    async def update_field(
        self, call_sid: str, key: str, fn: Callable[[Any], Any], *, default: Any = None
    ) -> Any:
        """Atomically replace a field with `fn(current)` and return the new value.

        `fn` may run more than once (optimistic retries), so it must be pure.
        """
        ...

    async def seed(self, call_sid: str, facts: Mapping[str, Any]) -> None:
        """Record the call's facts at call start; fields already present are kept."""
        ...

    async def delete(self, call_sid: str) -> None: ...

    async def ping(self) -> bool:
        """Whether the backing store answers now; never raises."""
        ...

    async def aclose(self) -> None: ...


class CallControl(Protocol):
    """What a tool may ask of the call itself; the bridge implements it."""

    async def end_call(self, reason: str) -> None:
        """Hang up once the agent's goodbye has been heard (not mid-sentence)."""
        ...

    async def transfer(self, number: str, announcement: str | None) -> None:
        """Transfer the caller to `number`, after speaking `announcement` if given."""
        ...


@dataclass(frozen=True, slots=True)
class CallState:
    """One call's view of a `StateStore`: the call sid is bound in."""

    store: StateStore
    call_sid: str

    async def get(self, key: str, default: Any = None) -> Any:
        return (await self.store.load(self.call_sid)).get(key, default)

    async def set(self, key: str, value: Any) -> None:
        await self.store.set_fields(self.call_sid, {key: value})

    async def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomic read-modify-write; `fn(current or default)` must be pure (it may rerun)."""
        return await self.store.update_field(self.call_sid, key, fn, default=default)

    async def snapshot(self) -> dict[str, Any]:
        return await self.store.load(self.call_sid)


def _empty_parameters() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ToolContext:
    """The narrow per-call context a tool receives by annotating a parameter with it."""

    call_sid: str
    stream_sid: str
    state: CallState
    control: CallControl
    from_number: str | None = None
    to_number: str | None = None
    # Custom <Parameter>s of the <Stream>, as Twilio sent them in the `start` message.
    parameters: Mapping[str, str] = field(default_factory=_empty_parameters)
    log: FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("voicebot.tools")
    )

    @classmethod
    def for_call(
        cls,
        store: StateStore,
        control: CallControl,
        *,
        call_sid: str,
        stream_sid: str,
        from_number: str | None = None,
        to_number: str | None = None,
        parameters: Mapping[str, str] | None = None,
        log: FilteringBoundLogger | None = None,
    ) -> ToolContext:
        """Build a context with the call's identifiers bound into the logger."""
        base: FilteringBoundLogger = log or structlog.get_logger("voicebot.tools")
        return cls(
            call_sid=call_sid,
            stream_sid=stream_sid,
            state=CallState(store, call_sid),
            control=control,
            from_number=from_number,
            to_number=to_number,
            parameters=MappingProxyType(dict(parameters or {})),
            log=base.bind(call_sid=call_sid, stream_sid=stream_sid),
        )
