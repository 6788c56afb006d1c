"""Each agent's tool registry: named built-ins, example sets and TOOLS_MODULE tools."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tools.builtin import make_builtin_tools
from tools.examples import EXAMPLE_SETS
from tools.loader import ToolLoadError, module_tools
from tools.registry import Tool, ToolRegistry


def available_tools(
    module: Sequence[Tool[..., Any]], transfer_allowlist: Iterable[str]
) -> dict[str, tuple[Tool[..., Any], ...]]:
    """Every name an agent may list: built-ins, example sets, and the module's tools."""
    named: dict[str, tuple[Tool[..., Any], ...]] = {
        t.name: (t,) for t in make_builtin_tools(transfer_allowlist)
    }
    named.update(EXAMPLE_SETS)
    for t in module:
        named.setdefault(t.name, (t,))
    return named


def agent_registry(
    names: Iterable[str],
    available: Mapping[str, tuple[Tool[..., Any], ...]],
    behavior: Mapping[str, str] | None = None,
) -> ToolRegistry:
    """The registry of the listed tools, with per-agent `tool_behavior` applied.

    Raises `ToolLoadError` naming an unknown tool (or a behavior for a tool not listed).
    """
    registry = ToolRegistry()
    for name in names:
        if name not in available:
            known = ", ".join(sorted(available))
            raise ToolLoadError(f"unknown tool {name!r}; available: {known}")
        for t in available[name]:
            registry.register(t)
    overrides = dict(behavior or {})
    for name in overrides:
        if name not in registry:
            raise ToolLoadError(f"tool_behavior names {name!r}, which is not in tools")
    if not overrides:
        return registry
    out = ToolRegistry()
    for name in registry.names():
        found = registry.get(name)
        assert found is not None
        t = found
        if name in overrides:
            kind = overrides[name]
            # A tool made BLOCKING here cannot keep a NON_BLOCKING-only scheduling.
            scheduling = t.scheduling if kind == "NON_BLOCKING" else None
            t = dataclasses.replace(t, behavior=kind, scheduling=scheduling)  # type: ignore[arg-type]
        out.register(t)
    return out


def load_module_tools(tools_module: str | None) -> list[Tool[..., Any]]:
    return module_tools(tools_module) if tools_module else []


__all__ = ["ToolLoadError", "agent_registry", "available_tools", "load_module_tools"]
