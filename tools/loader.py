"""Builds the registry of tools offered to the model on every call, from settings."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from tools.builtin import make_builtin_tools
from tools.examples import EXAMPLE_SETS
from tools.registry import Tool, ToolRegistry
from tools.schema import ToolDefinitionError


class ToolLoadError(ValueError):
    """The configured tools cannot be loaded; the message says what is available."""


def module_tools(module_path: str) -> list[Tool[..., Any]]:
    """Every `@tool` defined or imported at the top level of a module, in definition order."""
    try:
        module = importlib.import_module(module_path)
    except ToolDefinitionError:
        raise  # already names the function and parameter
    except ImportError as exc:
        raise ToolLoadError(f"TOOLS_MODULE: cannot import {module_path!r}: {exc}") from exc
    found = [value for value in vars(module).values() if isinstance(value, Tool)]
    if not found:
        raise ToolLoadError(f"TOOLS_MODULE: {module_path!r} defines no @tool functions")
    return found


def build_registry(
    enabled: Iterable[str],
    tools_module: str | None = None,
    transfer_allowlist: Iterable[str] = frozenset(),
) -> ToolRegistry:
    """Built-ins and example sets named in `enabled`, plus every tool in `tools_module`."""
    named: dict[str, tuple[Tool[..., Any], ...]] = {
        t.name: (t,) for t in make_builtin_tools(transfer_allowlist)
    }
    named.update(EXAMPLE_SETS)
    registry = ToolRegistry()
    for name in enabled:
        if name not in named:
            available = ", ".join(sorted(named))
            raise ToolLoadError(f"TOOLS: unknown tool {name!r}; available: {available}")
        for t in named[name]:
            registry.register(t)
    if tools_module:
        for t in module_tools(tools_module):
            registry.register(t)
    return registry
