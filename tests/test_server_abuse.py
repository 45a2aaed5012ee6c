"""Clients that misbehave on purpose: headers or bodies a byte at a time, a stream nobody
reads, WebSocket floods and oversized frames. Each is cut off by a bound, with a clear
answer where one can still be sent, and a well-behaved client beside them is unaffected."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
import websockets
from serving import keel_serve, running_server
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keel.server import ServerConfig
from keel.server.protocol import deadline_protocol

HEAD_TIMEOUT, BODY_TIMEOUT, SEND_TIMEOUT = 1.0, 1.0, 2.0


@pytest.fixture(scope="module")
def url():
    arguments = [
        "--model", "smollm2-135m",
        "--head-timeout", str(HEAD_TIMEOUT),
        "--body-timeout", str(BODY_TIMEOUT),
        "--send-timeout", str(SEND_TIMEOUT),
    ]  # fmt: skip
    with keel_serve(*arguments, env={"KEEL_CACHE": "0"}) as base:
        yield base


def raw_socket(url: str, receive_buffer: int | None = None) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, int(port)))
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except (TimeoutError, ConnectionResetError) as exc:
        return isinstance(exc, ConnectionResetError)


def quick_answer(url: str) -> float:
    """Seconds a well-behaved request takes."""
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/generate", json={"prompt": "Hi", "max_tokens": 4}, timeout=30)
    assert response.status_code == 200
    return time.perf_counter() - started


def idle(url: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        models = httpx.get(f"{url}/health").json()["models"]
        if all(m["running"] == 0 and m["waiting"] == 0 for m in models):
            return True
        time.sleep(0.1)
    return False


def test_keel_serve_parses_http_with_httptools():
    assert issubclass(deadline_protocol(HEAD_TIMEOUT), HttpToolsProtocol)


def test_headers_a_byte_at_a_time_are_cut_off_and_others_served(url):
    slow_heads_are_cut_off(url)


def test_the_h11_fallback_keeps_the_head_deadline():
    """Where httptools is missing, keel serve puts the same deadline on h11's protocol."""
    http = deadline_protocol(HEAD_TIMEOUT, H11Protocol)
    with running_server(ServerConfig(model="smollm2-135m"), http=http) as url:
        slow_heads_are_cut_off(url)
        assert closed_by_server(raw_socket(url), HEAD_TIMEOUT + 3)


def slow_heads_are_cut_off(url: str) -> None:
    slow = [raw_socket(url) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    while time.monotonic() - started < HEAD_TIMEOUT / 2:
        for sock in slow:
            sock.sendall(b"X")  # one byte of a header name, then nothing more for a while
        time.sleep(0.1)
    assert quick_answer(url) < 5
    assert all(closed_by_server(sock, HEAD_TIMEOUT + 3) for sock in slow)


def test_a_silent_connection_is_closed(url):
    assert closed_by_server(raw_socket(url), HEAD_TIMEOUT + 3)


def test_a_body_that_never_finishes_gets_408(url):
    sock = raw_socket(url)
    sock.sendall(
        b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"prompt": '
    )
    sock.settimeout(BODY_TIMEOUT + 5)
    answer = b""
    while b"did not arrive" not in answer and (part := sock.recv(65536)):
        answer += part  # the head and the body may come in separate segments
    answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "did not arrive within" in answer


def test_a_stream_nobody_reads_is_dropped_and_frees_its_slot(url):
    body = json.dumps(
        {"prompt": "Tell a long story.", "max_tokens": 1500, "temperature": 0.9,
         "logprobs": True, "top_logprobs": 20}
    ).encode()  # fmt: skip
    sock = raw_socket(url, receive_buffer=4096)
    sock.sendall(
        b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    time.sleep(1.0)
    assert quick_answer(url) < 5  # served beside it
    assert idle(url, within=60), "the unread stream still holds its slot"
    assert closed_by_server(sock, 5)


async def _flood(url: str) -> tuple[int, int]:
    request = {"prompt": "Count to five.", "max_tokens": 8}
    async with websockets.connect(url.replace("http", "ws") + "/v1/ws") as ws:
        for _ in range(30):
            await ws.send(json.dumps(request))
        finished = refused = 0
        while finished + refused < 30:
            message = json.loads(await ws.recv())
            if message["type"] == "error":
                assert message["code"] == "too_many_requests", message
                refused += 1
            elif message.get("finish_reason"):
                finished += 1
        return finished, refused


def test_websocket_flood_is_bounded_with_clear_errors(url):
    finished, refused = asyncio.run(_flood(url))
    assert finished >= 9 and refused >= 1 and finished + refused == 30
    assert idle(url, within=10)


async def _oversized(url: str) -> int:
    async with websockets.connect(url.replace("http", "ws") + "/v1/ws", max_size=None) as ws:
        await ws.send(json.dumps({"prompt": "x" * 2_000_000}))
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else -1
    return 0


def test_websocket_oversized_frame_closes_with_1009(url):
    assert asyncio.run(_oversized(url)) == 1009
    assert quick_answer(url) < 5


async def _ws_never_read(url: str) -> None:
    request = {
        "prompt": "Tell a long story.", "max_tokens": 1500, "temperature": 0.9,
        "logprobs": True, "top_logprobs": 20,
    }  # fmt: skip
    # max_queue=1: the client library buffers one message, then stops reading the socket
    async with websockets.connect(url.replace("http", "ws") + "/v1/ws", max_queue=1) as ws:
        await ws.send(json.dumps(request))
        await asyncio.sleep(1.0)
        assert quick_answer(url) < 5  # served beside it
        assert idle(url, within=60), "the unread WebSocket still holds its slot"


def test_a_websocket_nobody_reads_is_dropped_and_frees_its_slot(url):
    asyncio.run(_ws_never_read(url))


def test_prompts_and_budgets_beyond_the_context_are_cut_and_flagged(url):
    long = httpx.post(
        f"{url}/v1/generate", json={"prompt": "word " * 3000, "max_tokens": 4}, timeout=60
    )
    assert long.status_code == 200 and long.json()["stats"]["prompt_truncated"] is True
    # a prompt that fits alone, but not with its budget: the prompt's start gives way
    request = {"prompt": "word " * 2030, "max_tokens": 48, "temperature": 0.9}
    budget = httpx.post(f"{url}/v1/generate", json=request, timeout=120).json()
    stats = budget["stats"]
    assert stats["prompt_truncated"] is True and stats["generation_tokens"] <= 48
    assert stats["prompt_tokens"] + 48 <= 2048
