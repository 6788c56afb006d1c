"""JSON schema for a tool's parameters, built from its signature with pydantic.

Each parameter gets its own `TypeAdapter`: it validates the model's arguments at call
time and produces that parameter's JSON schema at decoration time. Per-parameter
adapters let every definition error name the parameter at fault.

The Live API accepts a subset of JSON Schema (the SDK models it as
`google.genai.types.JSONSchema`): no `$ref` cycles, and `title` is noise. So `$defs` are
inlined, titles dropped, and anything pydantic can only express as "any value" is
refused, because the model cannot be told what to send.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from pydantic import Field, TypeAdapter, ValidationError
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo


class ToolDefinitionError(TypeError):
    """A tool's signature or options cannot become a Live function declaration."""


class ToolArgumentsError(ValueError):
    """The model's arguments do not match the tool's parameters."""

    def __init__(self, tool: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid arguments for {tool}: " + "; ".join(problems))


JSONSchema = dict[str, Any]

# Keys that only describe or constrain; a schema with none of the "shape" keys is `{}`
# in disguise (Any, object) and tells the model nothing.
_SHAPE_KEYS = frozenset({"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"})


@dataclass(frozen=True, slots=True)
class Parameter:
    """One model-visible parameter: validates a raw argument into the annotated type."""

    name: str
    adapter: TypeAdapter[Any]
    schema: JSONSchema
    required: bool
    default: Any = None

    def validate(self, value: Any) -> Any:
        return self.adapter.validate_python(value)


_ARG_SECTIONS = frozenset({"args", "arguments", "parameters", "params"})


def describe(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (summary, {parameter: description})."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    item_indent: int | None = None
    current: str | None = None
    for line in inspect.cleandoc(doc or "").splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0 and re.fullmatch(r"[A-Za-z][\w ]*:\s*", line):
            section, item_indent, current = line.strip()[:-1].lower(), None, None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in _ARG_SECTIONS or not line.strip():
            continue
        if item_indent is None:
            item_indent = indent  # the first entry fixes where entries start
        item = re.fullmatch(r"\s*\*{0,2}(\w+)\s*(?:\(.*?\))?\s*:\s*(.*)", line)
        if indent == item_indent and item:
            current = item.group(1)
            args[current] = item.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    text = "\n".join(summary).strip()
    # Paragraphs stay apart; wrapped lines within one join with a space.
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "\n\n".join(paragraphs), args


def build_parameters(
    func: Callable[..., Any], tool_name: str, *, context_type: type
) -> tuple[dict[str, Parameter], str | None]:
    """Parameters the model fills in, and the name of the injected context parameter."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # NameError for unresolvable forward refs, and others
        raise ToolDefinitionError(
            f"tool {tool_name!r}: cannot resolve the type hints of {func.__qualname__}: {exc}"
        ) from exc
    _, doc_args = describe(func.__doc__)
    params: dict[str, Parameter] = {}
    context_name: str | None = None
    for p in inspect.signature(func).parameters.values():
        where = f"tool {tool_name!r} ({func.__qualname__}), parameter {p.name!r}"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolDefinitionError(f"{where}: *args/**kwargs cannot be declared to the model")
        if p.kind is p.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"{where}: positional-only; the model passes arguments by name"
            )
        if p.name not in hints:
            raise ToolDefinitionError(f"{where}: missing type annotation")
        annotation = hints[p.name]
        if annotation is context_type:
            context_name = p.name
            continue
        params[p.name] = _parameter(p, annotation, doc_args.get(p.name), where)
    return params, context_name


def _parameter(p: inspect.Parameter, annotation: Any, doc: str | None, where: str) -> Parameter:
    _refuse_opaque(annotation, where)
    annotation = _with_description(annotation, doc)
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        raw = adapter.json_schema()
    except (PydanticUserError, TypeError, ValueError) as exc:
        raise ToolDefinitionError(
            f"{where}: type {annotation!r} has no JSON schema: {exc}"
        ) from exc
    schema = inline_refs(raw, where)
    _refuse_empty(schema, where)
    required = p.default is inspect.Parameter.empty
    if not required:
        schema.pop("default", None)
        if p.default is not None:
            try:
                schema["default"] = adapter.dump_python(p.default, mode="json")
            except Exception as exc:  # pydantic raises several types for unserialisable values
                raise ToolDefinitionError(f"{where}: default is not JSON: {exc}") from exc
    return Parameter(p.name, adapter, schema, required, None if required else p.default)


def _with_description(annotation: Any, doc: str | None) -> Any:
    """Turn `Annotated[T, "text"]` (or a docstring entry) into a pydantic description."""
    base: Any = annotation
    metadata: tuple[Any, ...] = ()
    if get_origin(annotation) is Annotated:
        base, *rest = get_args(annotation)
        metadata = tuple(rest)
    texts = [m for m in metadata if isinstance(m, str)]
    others = [m for m in metadata if not isinstance(m, str)]
    has_field_description = any(isinstance(m, FieldInfo) and m.description for m in others)
    description = " ".join(texts) or (None if has_field_description else doc)
    if description:
        others.append(Field(description=description))
    return Annotated[base, *others] if others else base


def _refuse_opaque(annotation: Any, where: str) -> None:
    """Refuse types the model cannot be told about, before pydantic guesses `{}`."""
    if annotation is Any or annotation is object:
        raise ToolDefinitionError(f"{where}: {annotation!r} says nothing the model can fill in")
    origin = get_origin(annotation)
    if annotation is collections.abc.Callable or origin is collections.abc.Callable:
        raise ToolDefinitionError(f"{where}: a callable cannot come from the model")
    if isinstance(annotation, typing.TypeVar):
        raise ToolDefinitionError(f"{where}: type variables are not supported")
    for arg in get_args(annotation):
        if origin is Annotated and not isinstance(arg, type | typing.TypeVar):
            continue  # metadata, not a type
        if origin is typing.Literal:
            continue
        _refuse_opaque(arg, where)


def inline_refs(schema: JSONSchema, where: str) -> JSONSchema:
    """Replace every `$ref` with its definition and drop `title`; refuse recursion."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, active: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, active) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in active:
                raise ToolDefinitionError(f"{where}: recursive type {name!r} cannot be inlined")
            merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return walk(merged, (*active, name))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "title") or (key == "default" and value is None):
                continue  # titles are noise; a null default says nothing
            if key == "properties":
                # Property names are data here, not keywords: keep a field named "title".
                out[key] = {k: walk(v, active) for k, v in value.items()}
            else:
                out[key] = walk(value, active)
        return out

    result: JSONSchema = walk(schema, ())
    return result


def _refuse_empty(schema: Any, where: str) -> None:
    """Any `{}` left anywhere (e.g. `list[Any]`, a field typed `object`) is refused."""
    if isinstance(schema, list):
        for item in schema:
            _refuse_empty(item, where)
        return
    if not isinstance(schema, dict):
        return
    if not (_SHAPE_KEYS & schema.keys()) and "properties" not in schema:
        raise ToolDefinitionError(f"{where}: part of this type accepts any value ({schema!r})")
    for key, value in schema.items():
        if key == "properties":
            for sub in value.values():
                _refuse_empty(sub, where)
        elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems", "additionalProperties"):
            _refuse_empty(value, where)  # `additionalProperties: false` passes through


def object_schema(params: Mapping[str, Parameter]) -> JSONSchema:
    """The declaration's `parameters_json_schema`: an object of the parameters."""
    schema: JSONSchema = {
        "type": "object",
        "properties": {name: p.schema for name, p in params.items()},
    }
    required = [name for name, p in params.items() if p.required]
    if required:
        schema["required"] = required
    return schema


def validate_arguments(
    tool: str, params: Mapping[str, Parameter], args: Mapping[str, Any]
) -> dict[str, Any]:
    """Convert the model's JSON arguments; collect every problem before failing."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name in args:
        if name not in params:
            problems.append(
                f"{name}: unexpected argument (expected: {', '.join(params) or 'none'})"
            )
    for name, param in params.items():
        if name not in args:
            if param.required:
                problems.append(f"{name}: missing required argument")
            continue
        try:
            values[name] = param.validate(args[name])
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(part) for part in (name, *err["loc"]))
                problems.append(f"{loc}: {err['msg']}")
    if problems:
        raise ToolArgumentsError(tool, problems)
    return values
