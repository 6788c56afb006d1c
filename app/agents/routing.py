"""Which agent answers a call: the one asked for, else the one owning the number, else
the default."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from app.agents.agent import Agent


def normalize(number: str) -> str:
    """`+1 (555) 010-0100` -> `+15550100100`: Twilio sends E.164, people write otherwise."""
    return "".join(c for c in number if c.isdigit() or c == "+")


class AgentBook:
    def __init__(self, agents: Mapping[str, Agent], default: str) -> None:
        if default not in agents:
            raise ValueError(f"default agent {default!r} is not defined")
        self._agents = dict(agents)
        self.default = agents[default]
        self._by_number = {normalize(n): a for a in agents.values() for n in a.numbers}

    def __iter__(self) -> Iterator[Agent]:
        return iter(self._agents.values())

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, name: str | None) -> Agent | None:
        return self._agents.get(name) if name else None

    def for_number(self, number: str) -> Agent:
        return self._by_number.get(normalize(number), self.default)

    def for_call(self, *, to: str, from_: str, direction: str, requested: str | None) -> Agent:
        """Inbound: by the called number (`To`). Outbound (`voicebot call`): the agent
        asked for, else by our own number, which is then `From`."""
        chosen = self.get(requested)
        if chosen is not None:
            return chosen
        ours = from_ if direction.startswith("outbound") else to
        return self.for_number(ours)
