"""Tool calling on the real bundled chat model: every call names one of the allowed tools
and its arguments validate against that tool's schema, for every tool_choice and seed;
streamed calls equal the whole result's; a cache hit equals the miss; a session's tool
loop runs Python functions and feeds their results back; bad tool definitions fail before
anything is generated."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import BaseModel, Field

import keel
from keel import ChatSession, ToolCall
from keel.cache import configure_cache
from keel.errors import InvalidConstraintError, InvalidParameterError
from keel.structured import tools_from

PROMPT = "What is the weather in Paris? Use a tool."


def get_weather(city: str, unit: str = "celsius") -> dict:
    """Current weather for a city.

    Args:
        city: the city's name
        unit: celsius or fahrenheit
    """
    return {"city": city, "temperature": 18, "unit": unit}


class BookTable(BaseModel):
    """Book a restaurant table."""

    restaurant: str = Field(max_length=30)
    people: int = Field(ge=1, le=12)


SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "maxLength": 40}},
            "required": ["query"],
        },
    },
}
TOOLS = [get_weather, BookTable, SEARCH]
SCHEMAS = {tool.name: tool.parameters for tool in tools_from(TOOLS)}


def valid(calls: list[ToolCall], allowed: set[str]) -> None:
    for call in calls:
        assert call.name in allowed
        jsonschema.validate(call.args, SCHEMAS[call.name])
        assert call.id.startswith("call_")


@pytest.mark.parametrize("choice", ["required", "get_weather", "BookTable", "search", "auto"])
def test_every_call_is_valid_for_every_choice_and_seed(choice):
    allowed = set(SCHEMAS) if choice in ("required", "auto") else {choice}
    for seed in (1, 2, 3):
        result = keel.start_generation(
            PROMPT, tools=TOOLS, tool_choice=choice, seed=seed, temperature=0.9, max_new_tokens=80
        ).result()
        if choice != "auto":
            assert result.tool_calls and result.finish_reason == "tool_calls"
        valid(list(result.tool_calls), allowed)
        reply = keel.generate(
            PROMPT, tools=TOOLS, tool_choice=choice, seed=seed, temperature=0.9, max_new_tokens=80
        )
        assert reply == (list(result.tool_calls) or result.text)


def test_streamed_calls_equal_the_result_and_none_gives_text():
    options = {"tools": TOOLS, "tool_choice": "required", "max_new_tokens": 80}
    events = list(keel.stream_generate(PROMPT, **options))
    streamed = [call for event in events for call in event.tool_calls]
    assert streamed == keel.generate(PROMPT, **options)
    assert events[-1].finish_reason == "tool_calls"
    text = keel.generate(PROMPT, tools=TOOLS, tool_choice="none", max_new_tokens=16)
    assert isinstance(text, str)
    assert not parallel_calls_if_forbidden()


def parallel_calls_if_forbidden() -> bool:
    calls = keel.generate(
        PROMPT, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, max_new_tokens=80
    )
    return len(calls) != 1


def test_a_cache_hit_equals_the_miss(tmp_path):
    configure_cache(enabled=True, directory=tmp_path)
    try:
        options = {"tools": [SEARCH], "tool_choice": "required", "max_new_tokens": 60}
        miss = keel.start_generation(PROMPT, **options).result()
        hit = keel.start_generation(PROMPT, **options).result()
        assert not miss.cached and hit.cached
        assert hit.tool_calls == miss.tool_calls and hit.finish_reason == "tool_calls"
        assert keel.generate(PROMPT, **options) == list(miss.tool_calls)
    finally:
        configure_cache(reset=True)


def test_a_session_runs_its_tools_and_feeds_the_results_back():
    def session() -> ChatSession:
        return ChatSession(tools=[get_weather], tool_choice="required", max_new_tokens=64)

    chat = session()
    reply = chat.send("What is the weather in Paris?", run_tools=True, max_tool_rounds=2)
    assert isinstance(reply, str)
    results = [m for m in chat.history if m["role"] == "tool"]
    calls = [c for m in chat.history if m.get("tool_calls") for c in m["tool_calls"]]
    assert results and {r["tool_call_id"] for r in results} <= {c["id"] for c in calls}
    assert '"temperature": 18' in results[0]["content"]
    again = session()
    assert again.send("What is the weather in Paris?", run_tools=True, max_tool_rounds=2) == reply
    assert again.history == chat.history
    plain = session()
    made = plain.send("What is the weather in Paris?")
    assert isinstance(made, list) and plain.history[-1]["tool_calls"][0]["id"] == made[0].id


def test_bad_tool_definitions_fail_before_generating():
    class Opaque:
        pass

    def takes_opaque(thing: Opaque) -> None:
        """Cannot be described."""

    def untyped(city):  # type: ignore[no-untyped-def]
        """No annotation."""

    def variadic(*cities: str) -> None:
        """No name for its arguments."""

    bad_schema = {"type": "function", "function": {"name": "x", "parameters": {"type": "objekt"}}}
    cases = [
        ([takes_opaque], InvalidParameterError, "has no JSON Schema"),
        ([untyped], InvalidParameterError, "needs a type annotation"),
        ([variadic], InvalidParameterError, r"\*args"),
        ([get_weather, get_weather], InvalidParameterError, "unique"),
        ([bad_schema], InvalidConstraintError, "parameters must be a JSON Schema of an object"),
        ([{"type": "function", "function": {"name": "bad name"}}], InvalidParameterError, "name"),
        ([], InvalidParameterError, "non-empty list"),
    ]
    for tools, error, message in cases:
        with pytest.raises(error, match=message):
            keel.generate(PROMPT, tools=tools)
    with pytest.raises(InvalidParameterError, match="tool_choice must be"):
        keel.generate(PROMPT, tools=TOOLS, tool_choice="nope")
    with pytest.raises(InvalidParameterError, match="cannot be combined"):
        keel.generate(PROMPT, tools=TOOLS, choices=["a", "b"])
    with pytest.raises(InvalidParameterError, match="need tools"):
        keel.generate(PROMPT, tool_choice="required")
    with pytest.raises(InvalidParameterError, match="raw=True"):
        keel.generate(PROMPT, tools=TOOLS, raw=True)


def test_the_openai_client_tools_flow_against_keel_serve():
    import json

    from openai import OpenAI
    from serving import running_server

    from keel.server import ServerConfig

    with running_server(ServerConfig()) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused")
        messages = [{"role": "user", "content": PROMPT}]
        asked = {"model": "smollm2-135m", "tools": [SEARCH], "tool_choice": "required"}
        response = client.chat.completions.create(messages=messages, max_tokens=60, **asked)
        choice = response.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        calls = choice.message.tool_calls
        valid([ToolCall(c.id, c.function.name, c.function.arguments) for c in calls], {"search"})
        library = keel.generate(messages=messages, max_new_tokens=60, **asked)
        assert [c.id for c in calls] == [c.id for c in library]
        streamed: dict[int, dict] = {}
        finish = None
        for chunk in client.chat.completions.create(
            messages=messages, max_tokens=60, stream=True, **asked
        ):
            delta = chunk.choices[0].delta
            assert not delta.content
            for part in delta.tool_calls or []:
                entry = streamed.setdefault(part.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = part.id or entry["id"]
                entry["name"] += part.function.name or ""
                entry["arguments"] += part.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls"
        assert [(e["id"], e["name"], e["arguments"]) for e in streamed.values()] == [
            (c.id, c.function.name, c.function.arguments) for c in calls
        ]
        results = [
            {"role": "tool", "tool_call_id": c.id, "content": json.dumps({"hits": 3})}
            for c in calls
        ]
        follow_up = [*messages, choice.message.model_dump(exclude_none=True), *results]
        answer = client.chat.completions.create(
            model="smollm2-135m", messages=follow_up, tools=[SEARCH], max_tokens=24
        )
        assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_asend_runs_async_tools_like_send_runs_sync_ones():
    import asyncio

    async def get_weather_later(city: str, unit: str = "celsius") -> dict:
        """Current weather for a city."""
        await asyncio.sleep(0)
        return get_weather(city, unit)

    get_weather_later.__name__ = "get_weather"
    get_weather_later.__doc__ = get_weather.__doc__  # the same tool, as the model sees it

    def session(tool) -> ChatSession:
        return ChatSession(tools=[tool], tool_choice="required", max_new_tokens=64)

    sync = session(get_weather)
    expected = sync.send("Weather in Rome?", run_tools=True, max_tool_rounds=1)
    asynchronous = session(get_weather_later)
    reply = asyncio.run(asynchronous.asend("Weather in Rome?", run_tools=True, max_tool_rounds=1))
    assert reply == expected
    assert asynchronous.history == sync.history
