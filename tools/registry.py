"""`@tool` turns a typed function into a Live function declaration; `ToolRegistry` holds them.

Definitions are checked when the decorator runs, so a tool the model could not call
correctly fails at import, not in the middle of a phone call.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from tools.context import ToolContext
from tools.schema import (
    JSONSchema,
    Parameter,
    ToolDefinitionError,
    build_parameters,
    describe,
    object_schema,
    validate_arguments,
)

P = ParamSpec("P")
R = TypeVar("R")

Behavior = Literal["BLOCKING", "NON_BLOCKING"]
Scheduling = Literal["INTERRUPT", "WHEN_IDLE", "SILENT"]

# The Gemini API's rule for function names.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A NON_BLOCKING tool's result that also says how the model should take it.

    `return Scheduled(result, "WHEN_IDLE")`: INTERRUPT (speak about it now), WHEN_IDLE
    (after the current turn) or SILENT (just add it to the context). It overrides the
    tool's `scheduling=` for this one result.
    """

    result: Any
    scheduling: Scheduling


@dataclass(frozen=True, slots=True, eq=False)
class Tool(Generic[P, R]):
    """A function the model may call. Calling the object calls the function unchanged."""

    name: str
    description: str
    func: Callable[P, R]
    parameters: Mapping[str, Parameter]
    context_param: str | None = None
    behavior: Behavior | None = None
    # How a NON_BLOCKING result is delivered: interrupt the model, wait until idle, or
    # be silently added to the context. None lets the server decide.
    scheduling: Scheduling | None = None
    timeout: float | None = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def parameters_schema(self) -> JSONSchema:
        return object_schema(self.parameters)

    def declaration(self) -> dict[str, Any]:
        """Keyword arguments for `google.genai.types.FunctionDeclaration`."""
        decl: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.parameters:  # a tool without parameters declares none (not an empty object)
            decl["parameters_json_schema"] = self.parameters_schema()
        if self.behavior == "NON_BLOCKING":
            decl["behavior"] = self.behavior
        return decl

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Converted keyword arguments; raises `ToolArgumentsError` listing every problem."""
        return validate_arguments(self.name, self.parameters, args)

    async def invoke(self, context: ToolContext, kwargs: Mapping[str, Any]) -> Any:
        """Run with validated arguments; sync functions run in a thread so audio flows."""
        call_kwargs = dict(kwargs)
        if self.context_param is not None:
            call_kwargs[self.context_param] = context
        func = cast(Callable[..., Any], self.func)
        if self.is_async:
            return await cast(Callable[..., Awaitable[Any]], func)(**call_kwargs)
        return await asyncio.to_thread(func, **call_kwargs)


def _make_tool(
    func: Callable[P, R],
    *,
    name: str | None,
    description: str | None,
    behavior: Behavior | None,
    scheduling: Scheduling | None,
    timeout: float | None,
) -> Tool[P, R]:
    tool_name: str = name or str(getattr(func, "__name__", ""))
    if not _NAME.fullmatch(tool_name):
        raise ToolDefinitionError(
            f"tool name {tool_name!r} must be 1-64 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or '_'"
        )
    if behavior not in (None, "BLOCKING", "NON_BLOCKING"):
        raise ToolDefinitionError(f"tool {tool_name!r}: unknown behavior {behavior!r}")
    if scheduling is not None and behavior != "NON_BLOCKING":
        raise ToolDefinitionError(
            f"tool {tool_name!r}: scheduling applies only to behavior='NON_BLOCKING'"
        )
    if scheduling not in (None, "INTERRUPT", "WHEN_IDLE", "SILENT"):
        raise ToolDefinitionError(f"tool {tool_name!r}: unknown scheduling {scheduling!r}")
    if timeout is not None and not timeout > 0:
        raise ToolDefinitionError(f"tool {tool_name!r}: timeout must be positive")
    summary, _ = describe(func.__doc__)
    text = description or summary
    if not text:
        raise ToolDefinitionError(
            f"tool {tool_name!r} ({getattr(func, '__qualname__', tool_name)}): needs a "
            "description (a docstring or description=...); the model decides from it"
        )
    params, context_param = build_parameters(func, tool_name, context_type=ToolContext)
    return Tool(
        name=tool_name,
        description=text,
        func=func,
        parameters=params,
        context_param=context_param,
        behavior=behavior,
        scheduling=scheduling,
        timeout=timeout,
    )


@overload
def tool(func: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    behavior: Behavior | None = None,
    scheduling: Scheduling | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    behavior: Behavior | None = None,
    scheduling: Scheduling | None = None,
    timeout: float | None = None,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Declare a tool: `@tool` or `@tool(name=..., behavior="NON_BLOCKING", ...)`.

    The description is the docstring's summary; parameter descriptions come from its
    `Args:` section or from `Annotated[T, "text"]` / `Annotated[T, Field(description=...)]`.
    A parameter annotated `ToolContext` receives the call's context and is not declared.
    """

    def decorate(f: Callable[P, R]) -> Tool[P, R]:
        return _make_tool(
            f,
            name=name,
            description=description,
            behavior=behavior,
            scheduling=scheduling,
            timeout=timeout,
        )

    return decorate(func) if func is not None else decorate


class ToolRegistry:
    """The tools offered to the model on a call, by name."""

    def __init__(self, tools: Iterable[Tool[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool[..., Any]] = {}
        for t in tools:
            self.register(t)

    def register(self, t: Tool[..., Any]) -> None:
        existing = self._tools.get(t.name)
        if existing is not None and existing is not t:
            raise ToolDefinitionError(f"two different tools are named {t.name!r}")
        self._tools[t.name] = t

    def get(self, name: str) -> Tool[..., Any] | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        return [t.declaration() for t in self._tools.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)
