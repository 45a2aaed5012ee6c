"""Tool calling: tool definitions (Python functions, Pydantic models, OpenAI-style dicts) as
JSON Schemas, the grammar a call is generated under, and calls read back from the text.

The call format is the Hermes/Qwen one, which is also keel's for models whose chat
template has none:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

one block per call, nothing before the first. Under the grammar the name is one of the
tools and the arguments validate against that tool's (bounded) schema, so a call is never
malformed; a reply that does not start with a call is text.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidConstraintError, InvalidParameterError
from ..events import ToolCall
from .bounds import bounded_schema
from .constraint import Constraint, ConstraintKind, closed_objects

CALL_OPEN, CALL_CLOSE = "<tool_call>\n", "\n</tool_call>"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHOICES = ("auto", "required", "none")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema for the arguments object
    function: Callable[..., Any] | None = field(default=None, compare=False)
    adapter: Any = field(default=None, compare=False)  # validates arguments for `function`

    def spec(self) -> dict[str, Any]:
        """The OpenAI-style definition, as the model is shown it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidParameterError(
            f"a tool name must be 1-64 letters, digits, '_' or '-', got {name!r}"
        )
    return name


def _check_parameters(name: str, parameters: Any) -> dict[str, Any]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise InvalidConstraintError(
            f"tool {name!r}: parameters must be a JSON Schema of an object, got {parameters!r}"
        )
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        raise InvalidConstraintError(f"tool {name!r}: invalid JSON Schema: {exc.message}") from exc
    return {"type": "object", **parameters}


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google- or Sphinx-style docstring."""
    summary = inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ").strip() if doc else ""
    described = dict(re.findall(r"^\s*:param\s+(\w+):\s*(.+)$", doc or "", flags=re.M))
    in_args = False
    for line in (doc or "").splitlines():
        if re.match(r"^\s*(Args|Arguments|Parameters):\s*$", line):
            in_args = True
            continue
        if in_args:
            match = re.match(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$", line)
            if match:
                described.setdefault(match[1], match[2].strip())
            elif line.strip() and not line.startswith((" ", "\t")):
                in_args = False
    return summary, described


def _from_function(function: Callable[..., Any]) -> Tool:
    from pydantic import ConfigDict, Field, create_model
    from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

    name = _check_name(getattr(function, "__name__", None))
    summary, described = _docstring_parts(inspect.getdoc(function) or "")
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise InvalidParameterError(
                f"tool {name!r}: *args and **kwargs have no JSON Schema; name every parameter"
            )
        annotation = parameter.annotation
        if annotation is parameter.empty:
            raise InvalidParameterError(
                f"tool {name!r}: parameter {parameter.name!r} needs a type annotation"
            )
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (
            annotation,
            Field(default, description=described.get(parameter.name)),
        )
    try:
        model = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
        parameters = closed_objects(model.model_json_schema())
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise InvalidParameterError(
            f"tool {name!r}: its signature has no JSON Schema ({exc})"
        ) from exc
    parameters.pop("title", None)
    return Tool(name, summary, parameters, function, model)


def _from_model(model: Any) -> Tool:
    name = _check_name(model.__name__)
    parameters = closed_objects(model.model_json_schema())
    parameters.pop("title", None)
    summary, _ = _docstring_parts(inspect.getdoc(model) or "")
    return Tool(name, summary, parameters, None, model)


def _from_dict(spec: dict[str, Any]) -> Tool:
    body = spec.get("function") if spec.get("type") == "function" else None
    if not isinstance(body, dict):
        raise InvalidParameterError(
            'a tool dict must be {"type": "function", "function": {"name", "description", '
            f'"parameters"}}}}, got {spec!r}'
        )
    name = _check_name(body.get("name"))
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise InvalidParameterError(f"tool {name!r}: description must be a str")
    parameters = _check_parameters(name, body.get("parameters", {"type": "object"}))
    return Tool(name, description, parameters)


def tool_from(item: Any) -> Tool:
    from pydantic import BaseModel

    if isinstance(item, Tool):
        return item
    if isinstance(item, dict):
        return _from_dict(item)
    if isinstance(item, type) and issubclass(item, BaseModel):
        return _from_model(item)
    if callable(item):
        return _from_function(item)
    raise InvalidParameterError(
        f"a tool must be a function, a Pydantic model or an OpenAI-style dict, got {item!r}"
    )


def tools_from(items: Any) -> tuple[Tool, ...]:
    if isinstance(items, (str, dict)) or not isinstance(items, Sequence) or not items:
        raise InvalidParameterError(f"tools must be a non-empty list, got {items!r}")
    tools = tuple(tool_from(item) for item in items)
    names = [tool.name for tool in tools]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidParameterError(f"tool names must be unique; repeated: {repeated}")
    return tools


def chosen_tools(tools: tuple[Tool, ...], tool_choice: Any) -> tuple[tuple[Tool, ...], str]:
    """(the tools a call may name, "auto" | "required" | "none") for a tool_choice:
    "auto", "required", "none", a tool's name, or {"type": "function", "function":
    {"name": ...}}."""
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        tool_choice = function.get("name") if isinstance(function, dict) else None
    if tool_choice in CHOICES:
        return tools, str(tool_choice)
    named = [tool for tool in tools if tool.name == tool_choice]
    if not named:
        raise InvalidParameterError(
            f"tool_choice must be one of {CHOICES} or a tool's name "
            f"({[tool.name for tool in tools]}), got {tool_choice!r}"
        )
    return tuple(named), "required"


def tool_constraint(
    tools: tuple[Tool, ...], tool_choice: Any = "auto", parallel: bool = True
) -> Constraint | None:
    """The grammar of a reply: calls (one, or one or more when parallel) to the chosen
    tools, or, under "auto", text that does not start like a call. None for "none"."""
    if not isinstance(parallel, bool):
        raise InvalidParameterError(f"parallel_tool_calls must be bool, got {parallel!r}")
    allowed, mode = chosen_tools(tools, tool_choice)
    if mode == "none":
        return None
    calls = []
    for tool in allowed:
        arguments, _ = bounded_schema(tool.parameters)
        calls.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": arguments},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"anyOf": calls} if len(calls) > 1 else calls[0]
    schema["x-guidance"] = {"whitespace_flexible": False}
    more = ' ("\\n" call)*' if parallel else ""
    reply = "calls | text" if mode == "auto" else "calls"
    lark = (
        f"start: {reply}\n"
        f"calls: call{more}\n"
        f"call: {json.dumps(CALL_OPEN)} body {json.dumps(CALL_CLOSE)}\n"
        f"body: %json {json.dumps(schema)}\n"
        "text: /[^<](?s:.)*/\n"
    )
    key = json.dumps(
        {"tools": [tool.spec() for tool in allowed], "mode": mode, "parallel": parallel},
        sort_keys=True,
    )
    return Constraint(ConstraintKind.TOOLS, lark, key, tools=allowed, text_allowed=mode == "auto")


def call_id(index: int, name: str, arguments: str) -> str:
    """A call's id, the same whenever the same call is generated (ids are part of the
    conversation a tool result refers back to)."""
    return "call_" + hashlib.sha256(f"{index}:{name}:{arguments}".encode()).hexdigest()[:16]


class CallReader:
    """Calls read from a reply as its text streams in: each is returned once its closing
    tag has arrived, looking only at the text after the last call (so a long reply costs
    no more per token than a short one). A reply that does not start with a call holds
    none."""

    def __init__(self) -> None:
        self._open = ""  # the text after the last closed call
        self._count = 0  # calls returned so far
        self._text_reply = False  # decided once the reply's start differs from a call's

    @property
    def count(self) -> int:
        """Calls read so far."""
        return self._count

    def feed(self, text: str) -> list[ToolCall]:
        if self._text_reply:
            return []
        self._open += text
        if self._count == 0 and not self._open.startswith(CALL_OPEN[: len(self._open)]):
            self._text_reply = True
            return []
        found = []
        while (end := self._open.find(CALL_CLOSE)) >= 0:
            data = json.loads(self._open[:end].lstrip("\n").removeprefix(CALL_OPEN))
            arguments = json.dumps(data["arguments"], ensure_ascii=False)
            found.append(
                ToolCall(call_id(self._count, data["name"], arguments), data["name"], arguments)
            )
            self._count += 1
            self._open = self._open[end + len(CALL_CLOSE) :]
        return found


def read_calls(text: str) -> list[ToolCall]:
    """Every call in a finished reply (none for a text reply)."""
    return CallReader().feed(text)


def call_text(calls: Sequence[dict[str, Any]]) -> str:
    """OpenAI-style tool_calls of an assistant message as the model wrote them."""
    blocks = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidParameterError(f"a tool call must have function.name, got {call!r}")
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(
                f"tool call {function['name']!r}: arguments are not JSON ({exc.msg})"
            ) from exc
        body = json.dumps({"name": function["name"], "arguments": parsed}, ensure_ascii=False)
        blocks.append(CALL_OPEN + body + CALL_CLOSE)
    return "\n".join(blocks)


def tools_prompt(tools: tuple[Tool, ...]) -> str:
    """The system text that shows the model its tools and the call format."""
    listed = "\n".join(json.dumps(tool.spec(), ensure_ascii=False) for tool in tools)
    return (
        "You may call functions to answer. The functions:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "To call a function, reply with only this, one block per call:\n"
        f'{CALL_OPEN}{{"name": <function name>, "arguments": <arguments object>}}{CALL_CLOSE}\n'
        "Otherwise reply in plain text."
    )


def plain_messages(messages: Any) -> Any:
    """Messages with OpenAI's tool fields (an assistant's tool_calls, a tool result's
    tool_call_id, with its name) as plain role/content messages, in the form the model reads
    them; anything else is passed on for the usual checks."""
    if isinstance(messages, (str, dict)) or not isinstance(messages, Sequence):
        return messages
    plain = []
    for message in messages:
        if not isinstance(message, dict) or not {"tool_calls", "tool_call_id"} & set(message):
            plain.append(message)
            continue
        content = message.get("content")
        calls = message.get("tool_calls")
        if calls:
            written = call_text(calls)
            content = f"{content}\n{written}" if content else written
        plain.append({"role": message.get("role"), "content": content or ""})
    return plain


def with_tools_prompt(messages: list[Any], tools: tuple[Tool, ...]) -> list[Any]:
    """The tools' description first: in the leading system message, or as one."""
    described = tools_prompt(tools)
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") == "system":
        return [
            {"role": "system", "content": f"{described}\n\n{first.get('content')}"},
            *messages[1:],
        ]
    return [{"role": "system", "content": described}, *messages]
