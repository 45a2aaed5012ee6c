"""Hostile request bodies: every per-request limit on every route that generates, nasty
values beyond schemathesis' defaults (unicode, huge numbers, deep nesting), and the API
key on every route. The answer is always a 4xx with a JSON error, never a 5xx or a hang."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import running_server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from keel.server import ServerConfig, create_app
from keel.server.limits import (
    MAX_CHOICES,
    MAX_MESSAGES,
    MAX_REGEX_CHARS,
    MAX_SCHEMA_DEPTH,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    MAX_TOOLS,
)

CONFIG = ServerConfig(max_tokens=4, max_prompt_chars=400, max_body_bytes=400_000)


@pytest.fixture(scope="module")
def url():
    with running_server(CONFIG) as base:
        yield base


def _deep(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


OVER_LIMITS = {
    "stop": ["x"] * (MAX_STOP_STRINGS + 1),
    "long stop": ["x" * (MAX_STOP_CHARS + 1)],
    "deep schema": _deep(MAX_SCHEMA_DEPTH + 1),
    "long regex": "a" * (MAX_REGEX_CHARS + 1),
    "many choices": [f"c{i}" for i in range(MAX_CHOICES + 1)],
}


def _requests(name: str, value) -> dict[str, tuple[str, dict]]:
    """The same over-limit value as each generating route takes it."""
    native = {"prompt": "x", "max_tokens": 2}
    openai = {"model": "smollm2-135m", "max_tokens": 2}
    chat = {**openai, "messages": [{"role": "user", "content": "x"}]}
    if name in ("stop", "long stop"):
        extra_native = extra_openai = {"stop": value}
    elif name == "deep schema":
        extra_native = {"schema": value}
        extra_openai = {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": value},
            }
        }
    elif name == "long regex":
        extra_native, extra_openai = {"regex": value}, {"structured_outputs": {"regex": value}}
    else:
        extra_native, extra_openai = {"choices": value}, {"structured_outputs": {"choice": value}}
    return {
        "generate": ("/v1/generate", {**native, **extra_native}),
        "stream": ("/v1/stream", {**native, **extra_native}),
        "completions": ("/v1/completions", {**openai, "prompt": "x", **extra_openai}),
        "chat": ("/v1/chat/completions", {**chat, **extra_openai}),
        "chat stream": ("/v1/chat/completions", {**chat, **extra_openai, "stream": True}),
        "ws": ("/v1/ws", {**native, **extra_native}),
    }


@pytest.mark.parametrize("name", list(OVER_LIMITS))
def test_every_limit_on_every_route_is_a_400(url, name):
    for route, (path, body) in _requests(name, OVER_LIMITS[name]).items():
        if route == "ws":
            with connect(url.replace("http", "ws") + path) as socket:
                socket.send(json.dumps(body))
                reply = json.loads(socket.recv())
            assert reply["type"] == "error" and reply["code"] == "limit_exceeded", (route, reply)
            continue
        response = httpx.post(f"{url}{path}", json=body, timeout=60)
        assert response.status_code == 400, (route, response.text)
        error = response.json()["error"]
        assert error["code"] == "limit_exceeded" and "at most" in error["message"], (route, error)


def test_too_many_chat_messages_is_a_400(url):
    messages = [{"role": "user", "content": ""}] * (MAX_MESSAGES + 1)
    body = {"model": "smollm2-135m", "messages": messages, "max_tokens": 1}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["code"] == "limit_exceeded"


def test_too_many_or_too_large_tools_are_a_400(url):
    def tool(name: str, properties: int) -> dict:
        schema = {f"p{i}": {"type": "string"} for i in range(properties)}
        parameters = {"type": "object", "properties": schema}
        return {"type": "function", "function": {"name": name, "parameters": parameters}}

    for tools in ([tool(f"t{i}", 1) for i in range(MAX_TOOLS + 1)], [tool("big", 3000)]):
        body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}]}
        body |= {"tools": tools, "max_tokens": 1}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "tools"


# -- nasty values -------------------------------------------------------------------------

NASTY_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60
) | st.sampled_from(["\x00", "\ufeff", "\u202e", "🦊" * 50, "{{ x }}", "<|im_end|>", "\ufffd"])
NASTY_NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0, -1, 2**31, 2**63, 1e308, -1e-308, 10**40]),
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | NASTY_NUMBER | NASTY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NASTY_TEXT, inner, max_size=4),
    max_leaves=30,
)
FIELDS = [
    "prompt", "max_tokens", "seed", "temperature", "top_p", "top_k", "min_p", "stop",
    "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "schema", "regex",
    "choices", "messages", "response_format", "model", "n", "stream", "raw",
]  # fmt: skip


@st.composite
def bodies(draw):
    """A mostly plausible request with a few fields replaced by hostile values."""
    body = {"prompt": draw(NASTY_TEXT), "max_tokens": draw(st.integers(1, 3))}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[field] = draw(JSON_VALUE)
    if draw(st.booleans()):
        body["messages"] = [{"role": "user", "content": draw(NASTY_TEXT)}]
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/v1/generate", "/v1/completions", "/v1/chat/completions"]),
    body=bodies(),
)
def test_hostile_bodies_get_4xx_json_or_an_answer(url, path, body):
    if path != "/v1/generate":
        body = {"model": "smollm2-135m", **body}
    body.pop("stream", None)  # streamed answers are covered elsewhere
    response = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


@pytest.mark.parametrize("depth", [100, 5_000])
def test_deeply_nested_json_is_refused_cleanly(url, depth):
    body = '{"prompt": "x", "schema": ' + "[" * depth + '"x"' + "]" * depth + "}"
    response = httpx.post(f"{url}/v1/generate", content=body, timeout=60)
    assert 400 <= response.status_code < 500, response.text


# -- the API key --------------------------------------------------------------------------


def test_the_api_key_guards_every_route_but_health_and_never_shows():
    key = "sekret-key-1234"
    paths = create_app(ServerConfig(api_key=key)).openapi()["paths"]
    routes = [(method.upper(), path) for path, item in paths.items() for method in item]
    routes += [("GET", "/docs"), ("GET", "/openapi.json"), ("WS", "/v1/ws")]
    assert len(routes) >= 10
    with running_server(ServerConfig(api_key=key)) as base:
        for method, path in routes:
            if method == "WS":
                with pytest.raises(InvalidStatus):
                    connect(base.replace("http", "ws") + path).close()
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
                response = httpx.request(method, f"{base}{path}", headers=headers, json={})
                if path == "/health":
                    assert response.status_code == 200
                    continue
                assert response.status_code == 401, (method, path, response.status_code)
                assert key not in response.text
        assert httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}).is_success
