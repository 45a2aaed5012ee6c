"""keel serve under load: 32 clients on every generating route at once, a fifth of the
streams and sockets dropped at a random token. Nothing may be lost or changed: every
answer that completes equals the same request's answer sent alone, no response is a 5xx,
the log holds no exception, and the server ends idle with an empty queue."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse
from serving import keel_serve

CLIENTS = 32
REQUESTS = 192
DROP_SHARE = 0.2
MAX_TOKENS = 12
TOPICS = ["a lighthouse", "a fox", "the moon", "a train", "a garden", "a storm"]
SPECS = 12  # distinct (prompt, seed, temperature) requests, each sent many times
ROUTES = ["completions", "completions-stream", "chat", "chat-stream", "stream", "ws", "generate"]
STREAMING = {"completions-stream", "chat-stream", "stream", "ws"}


def spec(index: int) -> dict:
    """The sampling part of request `index`: greedy for a third, seeded T=0.8 otherwise."""
    number = index % SPECS
    return {
        "prompt": f"Write one line about {TOPICS[number % len(TOPICS)]}.",
        "seed": number,
        "temperature": 0.0 if number % 3 == 0 else 0.8,
        "max_tokens": MAX_TOKENS,
    }


def native_body(index: int) -> dict:
    return {**spec(index), "raw": True}


def chat_body(index: int, stream: bool = False) -> dict:
    sampling = spec(index)
    return {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": sampling.pop("prompt")}],
        "stream": stream,
        **sampling,
    }


def completion_body(index: int, stream: bool) -> dict:
    return {"model": "smollm2-135m", **spec(index), "stream": stream}


@dataclass
class Tally:
    answers: list[tuple[str, int, str]] = field(default_factory=list)  # (family, spec, text)
    statuses: list[int] = field(default_factory=list)
    dropped: int = 0


class Dropped(Exception):
    """The client walked away mid-stream, on purpose."""


def drop_after(rng: random.Random) -> int | None:
    """The token at which a streaming client leaves, or None to read to the end."""
    return rng.randint(1, MAX_TOKENS - 1) if rng.random() < DROP_SHARE else None


async def run_completions(client, url, index, stop_at, tally):
    response = await client.post(f"{url}/v1/completions", json=completion_body(index, False))
    tally.statuses.append(response.status_code)
    return "raw", response.json()["choices"][0]["text"]


async def run_completions_stream(client, url, index, stop_at, tally):
    body = completion_body(index, True)
    return "raw", await _sse_text(client, f"{url}/v1/completions", body, stop_at, tally)


async def _sse_text(client, url: str, body: dict, stop_at, tally) -> str:
    pieces: list[str] = []
    async with aconnect_sse(client, "POST", url, json=body) as source:
        tally.statuses.append(source.response.status_code)
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                break
            for choice in json.loads(event.data)["choices"]:
                piece = choice["text"] if "text" in choice else choice["delta"].get("content")
                if piece:
                    pieces.append(piece)
            if stop_at is not None and len(pieces) >= stop_at:
                raise Dropped
    return "".join(pieces)


async def run_chat(client, url, index, stop_at, tally):
    response = await client.post(f"{url}/v1/chat/completions", json=chat_body(index))
    tally.statuses.append(response.status_code)
    return "chat", response.json()["choices"][0]["message"]["content"]


async def run_chat_stream(client, url, index, stop_at, tally):
    body = chat_body(index, stream=True)
    return "chat", await _sse_text(client, f"{url}/v1/chat/completions", body, stop_at, tally)


async def run_stream(client, url, index, stop_at, tally):
    pieces: list[str] = []
    async with aconnect_sse(client, "POST", f"{url}/v1/stream", json=native_body(index)) as source:
        tally.statuses.append(source.response.status_code)
        async for event in source.aiter_sse():
            if event.event == "token":
                pieces.append(json.loads(event.data)["token"])
                if stop_at is not None and len(pieces) >= stop_at:
                    raise Dropped
            elif event.event == "complete":
                break
            elif event.event == "error":
                raise AssertionError(event.data)
    return "raw", "".join(pieces)


async def run_ws(client, url, index, stop_at, tally):
    pieces: list[str] = []
    async with websockets.connect(url.replace("http", "ws") + "/v1/ws") as socket:
        await socket.send(json.dumps(native_body(index)))
        while True:
            message = json.loads(await socket.recv())
            assert message["type"] == "token", message
            pieces.append(message["text"])
            if message.get("finish_reason"):
                return "raw", "".join(pieces)
            if stop_at is not None and len(pieces) >= stop_at:
                if index % 2:
                    socket.transport.abort()  # the socket just vanishes
                raise Dropped


async def run_generate(client, url, index, stop_at, tally):
    response = await client.post(f"{url}/v1/generate", json=native_body(index))
    tally.statuses.append(response.status_code)
    return "raw", response.json()["text"]


RUNNERS = {
    "completions": run_completions,
    "completions-stream": run_completions_stream,
    "chat": run_chat,
    "chat-stream": run_chat_stream,
    "stream": run_stream,
    "ws": run_ws,
    "generate": run_generate,
}


async def load(url: str) -> Tally:
    tally = Tally()
    rng = random.Random(7)
    routes = [ROUTES[i % len(ROUTES)] for i in range(REQUESTS)]
    plan = [
        (i, route, drop_after(rng) if route in STREAMING else None)
        for i, route in enumerate(routes)
    ]
    rng.shuffle(plan)
    queue: asyncio.Queue = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def client_loop() -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            while not queue.empty():
                index, route, stop_at = queue.get_nowait()
                try:
                    family, text = await RUNNERS[route](client, url, index, stop_at, tally)
                except Dropped:
                    tally.dropped += 1
                    continue
                tally.answers.append((family, index % SPECS, text))

    await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))
    return tally


def solo_answers(url: str) -> dict[tuple[str, int], str]:
    """Each distinct request sent alone, one after the other, before any load."""
    answers = {}
    with httpx.Client(timeout=120) as client:
        for number in range(SPECS):
            raw = client.post(f"{url}/v1/generate", json=native_body(number)).json()
            chat = client.post(f"{url}/v1/chat/completions", json=chat_body(number)).json()
            answers["raw", number] = raw["text"]
            answers["chat", number] = chat["choices"][0]["message"]["content"]
    return answers


def idle(url: str) -> dict:
    """/health once the server has settled: nothing running, nothing waiting."""
    deadline = time.monotonic() + 10
    while True:
        health = httpx.get(f"{url}/health").json()
        busy = sum(m["running"] + m["waiting"] for m in health["models"])
        if busy == 0 or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


@pytest.mark.timeout(600)
def test_many_clients_every_route_dropped_streams_nothing_lost(tmp_path):
    log = tmp_path / "server.log"
    with keel_serve("--model", "smollm2-135m", log=log, env={"KEEL_CACHE": "0"}) as url:
        solo = solo_answers(url)
        tally = asyncio.run(load(url))
        health = idle(url)
        metrics = httpx.get(f"{url}/metrics").text
    assert health["status"] == "ok"
    assert all(m["running"] == 0 and m["waiting"] == 0 for m in health["models"]), health
    assert not [s for s in tally.statuses if s >= 500]
    streams = sum(route in STREAMING for route in ROUTES) * REQUESTS // len(ROUTES)
    assert tally.dropped >= streams * DROP_SHARE / 2
    assert len(tally.answers) + tally.dropped == REQUESTS
    different = [(f, n, t) for f, n, t in tally.answers if t != solo[f, n]]
    assert not different, different[:3]
    text = log.read_text()
    assert "Traceback" not in text and "Exception" not in text and "ERROR" not in text, text
    assert 'keel_generations_total{reason="cancelled"}' in metrics
