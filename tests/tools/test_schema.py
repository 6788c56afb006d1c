"""`@tool` declarations: JSON schema per type, descriptions, SDK validation, errors."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
from google.genai import types
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from tools import Tool, ToolContext, ToolDefinitionError, ToolRegistry, tool
from tools.schema import ToolArgumentsError, describe


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


@dataclass
class Address:
    street: str
    postcode: str | None = None


class Pet(TypedDict):
    name: str
    legs: int


class Order(BaseModel):
    title: str  # a property named "title" must survive title-stripping
    address: Address
    colors: list[Color]


class Node(BaseModel):
    children: list[Node]


def props(t: Tool[..., Any]) -> dict[str, Any]:
    schema: dict[str, Any] = t.parameters_schema()
    return schema["properties"]  # type: ignore[no-any-return]


def walk_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        keys = set(node)
        for key, value in node.items():
            # property names are data, not keywords
            children = value.values() if key == "properties" else [value]
            for child in children:
                keys |= walk_keys(child)
        return keys
    if isinstance(node, list):
        return set().union(*(walk_keys(item) for item in node)) if node else set()
    return set()


# --- one tool per kind of signature -----------------------------------------------


@tool
def scalars(s: str, i: int, x: float, b: bool) -> str:
    """Scalars."""
    return s


@tool
def enums(color: Color, size: Size, mode: Literal["fast", "slow"]) -> str:
    """Enums and literals."""
    return mode


@tool
def optionals(a: int | None = None, b: str = "x", c: list[int] | None = None) -> None:
    """Optional parameters and defaults."""


@tool
def lists(tags: list[str], points: list[Address]) -> None:
    """Lists of scalars and objects."""


@tool
def nested(address: Address, pet: Pet, order: Order) -> None:
    """Dataclass, TypedDict and pydantic model parameters."""


@tool
def described(
    a: Annotated[str, "plain annotated text"],
    b: Annotated[int, Field(description="from Field", ge=1)],
    c: str,
    d: Annotated[str, "annotation wins"] = "",
) -> None:
    """Summary of the tool.

    A second paragraph that
    wraps.

    Args:
        a: ignored, the annotation wins.
        c: From the docstring, which
            continues here.
        d: ignored too.

    Returns:
        Nothing.
    """


@tool(name="with.options", description="Custom text.", behavior="NON_BLOCKING",
      scheduling="WHEN_IDLE", timeout=3.0)  # fmt: skip
async def with_options(ctx: ToolContext, q: str) -> str:
    """Docstring is overridden."""
    return q


@tool
async def no_parameters(ctx: ToolContext) -> str:
    """Takes nothing."""
    return "ok"


ALL_TOOLS: list[Tool[..., Any]] = [
    scalars, enums, optionals, lists, nested, described, with_options, no_parameters,
]  # fmt: skip


def test_scalar_types() -> None:
    assert props(scalars) == {
        "s": {"type": "string"},
        "i": {"type": "integer"},
        "x": {"type": "number"},
        "b": {"type": "boolean"},
    }
    assert scalars.parameters_schema()["required"] == ["s", "i", "x", "b"]


def test_enums_and_literals_become_enums() -> None:
    p = props(enums)
    assert p["color"] == {"type": "string", "enum": ["red", "blue"]}
    assert p["size"] == {"type": "integer", "enum": [1, 2]}
    assert p["mode"] == {"type": "string", "enum": ["fast", "slow"]}


def test_optional_and_defaulted_are_not_required() -> None:
    schema = optionals.parameters_schema()
    assert "required" not in schema
    assert schema["properties"]["a"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert schema["properties"]["b"] == {"type": "string", "default": "x"}


def test_lists() -> None:
    p = props(lists)
    assert p["tags"] == {"type": "array", "items": {"type": "string"}}
    assert p["points"]["items"]["type"] == "object"
    assert p["points"]["items"]["required"] == ["street"]


def test_nested_objects_are_inlined_without_refs_or_titles() -> None:
    p = props(nested)
    assert p["address"]["type"] == "object"
    assert set(p["address"]["properties"]) == {"street", "postcode"}
    assert p["pet"] == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "legs": {"type": "integer"}},
        "required": ["name", "legs"],
    }
    order = p["order"]
    assert order["properties"]["title"] == {"type": "string"}
    assert order["properties"]["address"]["properties"]["street"] == {"type": "string"}
    assert order["properties"]["colors"]["items"] == {"type": "string", "enum": ["red", "blue"]}
    keys = walk_keys(nested.parameters_schema())
    assert not keys & {"$ref", "$defs", "title"}


def test_descriptions_from_annotations_and_docstring() -> None:
    assert described.description == "Summary of the tool.\n\nA second paragraph that wraps."
    p = props(described)
    assert p["a"]["description"] == "plain annotated text"
    assert p["b"]["description"] == "from Field"
    assert p["b"]["minimum"] == 1
    assert p["c"]["description"] == "From the docstring, which continues here."
    assert p["d"]["description"] == "annotation wins"


def test_options_and_context_injection() -> None:
    decl = with_options.declaration()
    assert decl["name"] == "with.options"
    assert decl["description"] == "Custom text."
    assert decl["behavior"] == "NON_BLOCKING"
    assert list(decl["parameters_json_schema"]["properties"]) == ["q"]  # ctx is injected
    assert with_options.context_param == "ctx"
    assert (with_options.scheduling, with_options.timeout) == ("WHEN_IDLE", 3.0)
    assert "behavior" not in scalars.declaration()  # blocking is the default: omitted


def test_no_parameters_declares_none() -> None:
    assert no_parameters.declaration() == {"name": "no_parameters", "description": "Takes nothing."}


@pytest.mark.parametrize("t", ALL_TOOLS, ids=lambda t: t.name)
def test_declaration_validates_as_sdk_function_declaration(t: Tool[..., Any]) -> None:
    decl = types.FunctionDeclaration(**t.declaration())
    assert decl.name == t.name
    schema = t.declaration().get("parameters_json_schema")
    if schema is not None:
        # The SDK's own model of the JSON Schema subset (extra="forbid") accepts it...
        parsed = types.JSONSchema.model_validate(schema)
        # ...and converts it to the API's Schema without unsupported fields.
        types.Schema.from_json_schema(json_schema=parsed, raise_error_on_unsupported_field=True)
    # And it fits in a Live connect config the way the adapter builds it.
    types.LiveConnectConfig(tools=[types.Tool(function_declarations=[decl])])


def test_decorated_function_still_callable() -> None:
    assert scalars("a", 1, 1.0, True) == "a"


# --- argument validation ----------------------------------------------------------


def test_arguments_are_converted() -> None:
    kwargs = nested.validate(
        {
            "address": {"street": "Main St"},
            "pet": {"name": "Rex", "legs": "4"},
            "order": {"title": "t", "address": {"street": "x"}, "colors": ["blue"]},
        }
    )
    assert kwargs["address"] == Address("Main St")
    assert kwargs["pet"] == {"name": "Rex", "legs": 4}
    assert kwargs["order"].colors == [Color.BLUE]
    assert enums.validate({"color": "red", "size": 2, "mode": "fast"})["color"] is Color.RED
    assert scalars.validate({"s": "a", "i": 2.0, "x": 1, "b": True})["i"] == 2


def test_bad_arguments_list_every_problem() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        enums.validate({"color": "green", "size": 3, "extra": 1})
    problems = info.value.problems
    assert any(p.startswith("color:") for p in problems)
    assert any(p.startswith("size:") for p in problems)
    assert "mode: missing required argument" in problems
    assert any(p.startswith("extra: unexpected argument") for p in problems)
    assert "enums" in str(info.value)


# --- definition errors ------------------------------------------------------------


def _any(x: Any) -> None:
    """d"""


def _object(x: object) -> None:
    """d"""


def _callable(x: Callable[[int], int]) -> None:
    """d"""


def _varargs(*args: int) -> None:
    """d"""


def _kwargs(**kw: int) -> None:
    """d"""


def _missing(x) -> None:  # type: ignore[no-untyped-def]
    """d"""


def _recursive(x: Node) -> None:
    """d"""


def _list_any(x: list[Any]) -> None:
    """d"""


class _Loose(BaseModel):
    value: Any


def _nested_any(x: _Loose) -> None:
    """d"""


def _undocumented(x: int) -> None:
    pass


def _unresolvable(x: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
    """d"""


@pytest.mark.parametrize(
    ("func", "fragment"),
    [
        (_any, "parameter 'x'"),
        (_object, "parameter 'x'"),
        (_callable, "callable"),
        (_varargs, "parameter 'args'"),
        (_kwargs, "parameter 'kw'"),
        (_missing, "missing type annotation"),
        (_recursive, "recursive type 'Node'"),
        (_list_any, "parameter 'x'"),
        (_nested_any, "accepts any value"),
        (_undocumented, "needs a description"),
        (_unresolvable, "NotDefinedAnywhere"),
    ],
)
def test_definition_errors_fail_at_decoration(func: Callable[..., Any], fragment: str) -> None:
    with pytest.raises(ToolDefinitionError) as info:
        tool(func)
    assert fragment in str(info.value)
    assert func.__name__ in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"name": "has space"},
        {"name": "9starts_with_digit"},
        {"scheduling": "WHEN_IDLE"},  # scheduling without NON_BLOCKING
        {"behavior": "SOMETIMES"},
        {"timeout": 0},
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ToolDefinitionError):
        tool(**options)(scalars.func)


def test_registry() -> None:
    registry = ToolRegistry([scalars, enums])
    assert registry.names() == ["scalars", "enums"]
    assert registry.get("enums") is enums
    assert registry.get("missing") is None
    assert [d["name"] for d in registry.declarations()] == ["scalars", "enums"]
    registry.register(scalars)  # the same tool again is harmless
    with pytest.raises(ToolDefinitionError, match="two different tools"):
        registry.register(tool(name="scalars")(enums.func))


def test_describe_google_docstring() -> None:
    summary, args = describe(
        """Do a thing.

        Args:
            first (int): One.
            second: Two,
                continued.

        Raises:
            ValueError: never listed as an argument.
        """
    )
    assert summary == "Do a thing."
    assert args == {"first": "One.", "second": "Two, continued."}
