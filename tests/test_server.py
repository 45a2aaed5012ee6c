"""The HTTP server over real sockets, with real clients: httpx, httpx-sse, websockets and
the official openai package. Same request through server and library == same output."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families
from serving import keel_serve, running_server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import keel
from keel.loaded import load_location
from keel.models import resolve_model
from keel.server import ServerConfig

PROMPT = "Write one sentence about the sea."
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def url():
    config = ServerConfig(max_tokens=64, max_prompt_chars=2000, max_body_bytes=20_000)
    with running_server(config) as base:
        yield base


def _library(prompt=PROMPT, **options):
    events = list(keel.stream_generate(prompt, **options))
    return "".join(e.text for e in events), [e.token for e in events if e.token >= 0]


def _sse(url, request):
    with (
        httpx.Client(timeout=120) as client,
        connect_sse(client, "POST", f"{url}/v1/stream", json=request) as source,
    ):
        return [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]


def test_health_reports_the_model_and_its_batching_self_check(url):
    body = httpx.get(f"{url}/health").json()
    assert body["status"] == "ok" and body["model"] == "smollm2-135m"
    info = next(m for m in body["models"] if m["name"] == "smollm2-135m")
    assert info["batch_sizes"][0] == 1 and info["slots"] >= 1 and len(info["sha256"]) == 64
    assert body["queue_depth"] >= 1


def test_health_is_503_while_the_model_loads(monkeypatch):
    monkeypatch.setenv("KEEL_N_CTX", "1024")  # a context not loaded yet: a real load
    with running_server(ServerConfig(model="gemma3-270m"), wait_healthy=False) as base:
        first = httpx.get(f"{base}/health")
        assert first.status_code == 503 and first.json()["status"] == "loading"
        deadline = time.monotonic() + 120
        while (health := httpx.get(f"{base}/health")).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert health.status_code == 200


def test_generate_equals_the_library(url, model_name):
    request = dict(prompt=PROMPT, model=model_name, seed=5, temperature=0.8, max_new_tokens=16)
    body = httpx.post(f"{url}/v1/generate", json=request, timeout=120).json()
    text, tokens = _library(PROMPT, model=model_name, seed=5, temperature=0.8, max_new_tokens=16)
    assert body["text"] == text and body["token_ids"] == tokens
    assert body["finish_reason"] in {"stop", "length"} and body["fingerprint"].startswith("fp_")
    assert body["stats"]["generation_tokens"] == len(tokens)


def test_generate_structured_value(url):
    request = dict(prompt="Name one colour.", choices=["red", "green", "blue"], max_new_tokens=8)
    body = httpx.post(f"{url}/v1/generate", json=request, timeout=120).json()
    assert body["value"] in {"red", "green", "blue"} and body["text"] == body["value"]


def test_sse_stream_equals_the_library(url):
    request = dict(prompt=PROMPT, seed=2, temperature=0.7, max_tokens=20, logprobs=True)
    events = _sse(url, request)
    tokens = [data for kind, data in events if kind == "token"]
    kind, complete = events[-1]
    text, ids = _library(PROMPT, seed=2, temperature=0.7, max_new_tokens=20)
    assert kind == "complete" and "".join(t["token"] for t in tokens) == text
    assert [t["token_id"] for t in tokens] == ids
    assert [t["position"] for t in tokens] == list(range(1, len(ids) + 1))
    assert all("logprobs" in t and t["cumulative_time_ms"] >= 0 for t in tokens)
    assert complete["total_tokens"] == len(ids) and complete["completed_normally"] is True
    assert complete["fingerprint"].startswith("fp_") and complete["tokens_per_second"] > 0


def test_a_structured_request_that_cannot_finish_is_refused_before_streaming(url):
    request = dict(prompt="A person:", schema=PERSON, max_tokens=3)
    for route in ("/v1/stream", "/v1/generate"):
        response = httpx.post(f"{url}{route}", json=request, timeout=60)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert (
            error["code"] == "structured_output_failed" and "max_new_tokens=3" in error["message"]
        )


def test_websocket_streams_cancels_and_serves_the_next_request(url):
    ws_url = url.replace("http", "ws") + "/v1/ws"
    with connect(ws_url) as ws:
        ws.send(json.dumps({"prompt": PROMPT, "max_new_tokens": 12, "seed": 4, "temperature": 0.7}))
        messages = []
        while "finish_reason" not in (message := json.loads(ws.recv())):
            messages.append(message)
        messages.append(message)
        text, ids = _library(PROMPT, max_new_tokens=12, seed=4, temperature=0.7)
        assert "".join(m["text"] for m in messages) == text
        assert [m["token_id"] for m in messages if m["token_id"] is not None] == ids

        ws.send(json.dumps({"prompt": PROMPT, "max_new_tokens": 64, "temperature": 0.9}))
        for _ in range(3):
            json.loads(ws.recv())
        ws.send(json.dumps({"type": "cancel"}))
        while "finish_reason" not in (message := json.loads(ws.recv())):
            pass
        assert message["finish_reason"] == "cancelled"

        ws.send(json.dumps({"prompt": "Hi", "max_new_tokens": 2}))
        while "finish_reason" not in (message := json.loads(ws.recv())):
            pass
        assert message["finish_reason"] in {"stop", "length"}

        ws.send(json.dumps({"prompt": "Hi", "max_new_tokens": 0}))
        assert json.loads(ws.recv())["type"] == "error"
        ws.send("not json")
        assert json.loads(ws.recv())["type"] == "error"
        ws.send(json.dumps({"prompt": "Hi", "max_new_tokens": 1}))
        assert json.loads(ws.recv())["finish_reason"] is not None


def test_openai_client_completions_and_chat(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    completion = client.completions.create(
        model="smollm2-135m", prompt="The sea is", max_tokens=12, seed=3, temperature=0.7
    )
    text, _ = _library("The sea is", raw=True, max_new_tokens=12, seed=3, temperature=0.7)
    assert completion.choices[0].text == text
    assert completion.system_fingerprint.startswith("fp_")
    assert completion.usage.completion_tokens == 12

    chat = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=16,
        logprobs=True,
        top_logprobs=2,
    )
    text, ids = _library(PROMPT, max_new_tokens=16)
    assert chat.choices[0].message.content == text
    assert len(chat.choices[0].logprobs.content) == len(ids)
    assert all(len(entry.top_logprobs) == 2 for entry in chat.choices[0].logprobs.content)

    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == len(ids)

    pieces = client.completions.create(
        model="smollm2-135m",
        prompt="The sea is",
        max_tokens=12,
        seed=3,
        temperature=0.7,
        stream=True,
    )
    assert "".join(c.choices[0].text for c in pieces) == completion.choices[0].text


def test_openai_response_format_json_schema(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    response_format = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    messages = [{"role": "user", "content": "Describe a person."}]
    chat = client.chat.completions.create(
        model="smollm2-135m", messages=messages, max_tokens=60, response_format=response_format
    )
    person = json.loads(chat.choices[0].message.content)
    assert set(person) == {"name", "age"}
    library = keel.generate_json("Describe a person.", PERSON, max_new_tokens=60)
    assert person == library
    streamed = client.chat.completions.create(
        model="smollm2-135m",
        messages=messages,
        max_tokens=60,
        response_format=response_format,
        stream=True,
    )
    content = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert content == chat.choices[0].message.content
    any_json = client.chat.completions.create(
        model="smollm2-135m",
        messages=messages,
        max_tokens=60,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(any_json.choices[0].message.content), dict)


def test_openai_models_and_unknown_model(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    assert client.models.list().data[0].id == "smollm2-135m"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)


def test_limits_and_bad_input_are_4xx_json(url):
    def post(path, **kwargs):
        return httpx.post(f"{url}{path}", timeout=60, **kwargs)

    cases = [
        (post("/v1/generate", json={"prompt": "x" * 2001}), 400, "prompt_too_long"),
        (post("/v1/generate", json={"prompt": "x", "max_tokens": 65}), 400, "max_tokens_too_large"),
        (post("/v1/generate", content=b'{"prompt": "' + b"x" * 30_000 + b'"}'), 413, None),
        (post("/v1/generate", content=b"{not json"), 400, None),
        (post("/v1/generate", json={"prompt": 3}), 400, None),
        (post("/v1/generate", json={"prompt": "x", "seed": -1}), 400, "invalid_parameter"),
        (post("/v1/generate", json={"prompt": "x", "model": "/etc/passwd"}), 404, None),
        (post("/v1/generate", json={"prompt": "x", "regex": "("}), 400, "invalid_constraint"),
        (post("/v1/generate", json={"prompt": "x", "regex": "(a)\\1"}), 400, "invalid_constraint"),
        (post("/v1/generate", json={"prompt": "x", "schema": {"type": "objekt"}}), 400, None),
        (post("/v1/generate", json={"prompt": "x", "regex": 3}), 400, None),
        (post("/v1/generate", json={"prompt": "x", "unknown": 1}), 400, None),
        (
            post("/v1/generate", json={"prompt": "x", "presence_penalty": 5}),
            400,
            "invalid_parameter",
        ),
        (
            post(
                "/v1/completions",
                json={"model": "smollm2-135m", "prompt": "x", "frequency_penalty": -3},
            ),
            400,
            "invalid_parameter",
        ),
        (post("/v1/completions", json={"model": "smollm2-135m", "prompt": "x", "n": 2}), 400, None),
        (httpx.get(f"{url}/nowhere"), 404, None),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"]
        if code:
            assert error["code"] == code


def test_queue_full_is_429_with_retry_after(url, monkeypatch):
    monkeypatch.setenv("KEEL_SLOTS", "1")  # this test's requests use a one-slot engine
    monkeypatch.setenv("KEEL_QUEUE_DEPTH", "1")
    story = "Write a long story about a lighthouse keeper."
    running = keel.start_generation(story, max_new_tokens=300, temperature=0.9)
    events = iter(running)  # kept: a dropped iterator would cancel its generation
    next(events)
    waiting = keel.start_generation(story, max_new_tokens=300, seed=1)
    try:
        response = httpx.post(f"{url}/v1/generate", json={"prompt": "x", "max_tokens": 2})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "queue_full"
    finally:
        waiting.cancel()
        running.cancel()


def test_disconnect_mid_stream_frees_the_slot(url):
    worker = load_location(resolve_model("smollm2-135m")).lanes[0].worker
    request = dict(prompt=PROMPT, max_tokens=64, temperature=0.9)
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, "POST", f"{url}/v1/stream", json=request) as source,
    ):
        events = source.iter_sse()
        next(events)
        next(events)
    started = time.perf_counter()
    body = httpx.post(f"{url}/v1/generate", json={"prompt": "Hi", "max_tokens": 2}).json()
    assert body["finish_reason"] in {"stop", "length"}
    assert time.perf_counter() - started < 2.0
    deadline = time.monotonic() + 5
    while worker.busy:
        assert time.monotonic() < deadline, "the abandoned generation still holds a slot"
        time.sleep(0.05)


def test_metrics_exposition(url):
    httpx.post(f"{url}/v1/generate", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    text = httpx.get(f"{url}/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = families["keel_requests"].samples
    assert any(s.labels["route"] == "/v1/generate" and s.value >= 1 for s in requests)
    generated = sum(s.value for s in families["keel_generated_tokens"].samples)
    assert generated >= 2
    assert "keel_queue_waiting" in families and "keel_time_to_first_token_seconds" in families
    assert "keel_cache_misses" in families


def test_api_key_guards_every_route_but_health():
    with running_server(ServerConfig(api_key="sekret")) as base:
        assert httpx.get(f"{base}/health").status_code == 200
        denied = httpx.get(f"{base}/v1/models")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{base}/metrics").status_code == 401
        headers = {"Authorization": "Bearer sekret"}
        assert httpx.get(f"{base}/v1/models", headers=headers).status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="wrong").models.list()
        good = openai.OpenAI(base_url=f"{base}/v1", api_key="sekret")
        assert good.completions.create(model="smollm2-135m", prompt="x", max_tokens=1).choices
        ws = base.replace("http", "ws") + "/v1/ws"
        with pytest.raises(InvalidStatus):
            connect(ws).close()
        with connect(f"{ws}?api_key=sekret") as socket:
            socket.send(json.dumps({"prompt": "Hi", "max_new_tokens": 1}))
            assert json.loads(socket.recv())["finish_reason"] is not None


def test_concurrent_server_requests_equal_solo(url):
    requests = [dict(prompt=PROMPT, seed=s, temperature=0.8, max_tokens=12) for s in range(6)]
    solo = [_library(PROMPT, seed=s, temperature=0.8, max_new_tokens=12)[0] for s in range(6)]
    results = [None] * len(requests)

    def call(index):
        body = httpx.post(f"{url}/v1/generate", json=requests[index], timeout=120).json()
        results[index] = body["text"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == solo


def test_penalties_and_confidence_over_http_equal_the_library(url):
    options = {"max_new_tokens": 16, "frequency_penalty": 1.0, "no_repeat_ngram_size": 2}
    body = httpx.post(
        f"{url}/v1/generate", json={"prompt": PROMPT, "logprobs": True, **options}, timeout=60
    ).json()
    text, logprobs = keel.generate(PROMPT, return_logprobs=True, **options)
    assert body["text"] == text and body["logprobs"] == logprobs
    assert all(0 < entry["confidence"] <= 1 for entry in body["logprobs"]["content"])
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    completion = client.completions.create(
        model="smollm2-135m", prompt=PROMPT, max_tokens=16, frequency_penalty=1.0
    )
    assert completion.choices[0].text == keel.generate(
        PROMPT, raw=True, max_new_tokens=16, frequency_penalty=1.0
    )


def test_a_server_with_two_lanes_answers_concurrent_requests_as_one_alone():
    solo = [_library(PROMPT, seed=s, temperature=0.8, max_new_tokens=12)[0] for s in range(6)]
    with keel_serve("--model", "smollm2-135m", env={"KEEL_LANES": "2"}) as base:

        def call(seed: int) -> str:
            body = {"prompt": PROMPT, "seed": seed, "temperature": 0.8, "max_tokens": 12}
            return httpx.post(f"{base}/v1/generate", json=body, timeout=120).json()["text"]

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(call, range(6))) == solo
        (model,) = httpx.get(f"{base}/health").json()["models"]
        assert model["lanes"] == 2
