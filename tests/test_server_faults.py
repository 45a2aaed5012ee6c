"""keel serve when things break underneath it: killed mid-stream and mid-cache-write, a
cache that cannot be written (file size limit, an unusable directory, its file deleted
while serving). Generation goes on, answers stay the same, the cache stays whole."""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import signal
import socket
import sqlite3
import time

import httpx
from httpx_sse import aconnect_sse
from serving import keel_serve, keel_serve_process

import keel
from keel.cache import FILENAME

MODEL = "smollm2-135m"


def body(index: int, max_tokens: int = 16) -> dict:
    return {
        "prompt": f"Name a colour and a fruit (#{index}).",
        "max_tokens": max_tokens,
        "seed": index,
        "temperature": 0.8,
    }


def library_text(index: int, max_tokens: int = 16, model: str = MODEL) -> str:
    """The same request through the library (the tests run it with the cache off)."""
    request = body(index, max_tokens)
    return keel.generate(
        request.pop("prompt"), model=model, max_new_tokens=request.pop("max_tokens"), **request
    )


def generate(url: str, index: int, max_tokens: int = 16) -> dict:
    response = httpx.post(f"{url}/v1/generate", json=body(index, max_tokens), timeout=180)
    assert response.status_code == 200, response.text
    return response.json()


async def streams_until_killed(url: str, process, count: int) -> None:
    """`count` streams of different lengths, the server killed once some have finished
    (so cache writes are happening) and others are mid-stream."""
    finished = 0

    async def one(index: int) -> None:
        nonlocal finished
        async with httpx.AsyncClient(timeout=60) as client:
            request = body(index, max_tokens=8 + 12 * (index % 8))
            try:
                async with aconnect_sse(client, "POST", f"{url}/v1/stream", json=request) as s:
                    async for event in s.aiter_sse():
                        if event.event == "complete":
                            finished += 1
            except httpx.HTTPError:
                pass  # the server died under it

    async def killer() -> None:
        while finished < count // 3:
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)

    await asyncio.gather(killer(), *(one(100 + i) for i in range(count)))


def test_kill_9_mid_stream_and_cache_write_then_restart(tmp_path):
    env = {"KEEL_CACHE": "1", "KEEL_CACHE_DIR": str(tmp_path)}
    with keel_serve_process("--model", MODEL, env=env) as (url, process):
        before = {index: generate(url, index)["text"] for index in range(6)}
        asyncio.run(streams_until_killed(url, process, 16))
        process.wait(timeout=30)
    database = sqlite3.connect(tmp_path / FILENAME)
    assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    database.close()
    with keel_serve("--model", MODEL, env=env) as url:
        after = {index: generate(url, index) for index in range(6)}
        streamed = {i: generate(url, i, 8 + 12 * (i % 8)) for i in range(100, 116)}
    assert {index: answer["text"] for index, answer in after.items()} == before
    assert all(answer["stats"]["cached"] for answer in after.values())
    cached = [i for i, answer in streamed.items() if answer["stats"]["cached"]]
    assert cached, "no stream finished and was stored before the kill"
    for index, answer in streamed.items():  # stored whole or not at all
        assert answer["text"] == library_text(index, 8 + 12 * (index % 8))


def _small_files() -> None:
    """In the server process: no file may grow past 48 KiB (the cache's write fails)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))


def cache_errors(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("keel_cache_errors_total"):
            return float(line.split()[-1])
    raise AssertionError("keel_cache_errors_total is not exposed")


def test_a_full_disk_skips_cache_writes_with_a_warning_and_a_metric(tmp_path):
    env = {"KEEL_CACHE": "1", "KEEL_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "server.log"
    with keel_serve_process("--model", MODEL, env=env, log=log, preexec_fn=_small_files) as (
        url,
        _,
    ):
        answers = {index: generate(url, index, 48)["text"] for index in range(40)}
        errors = cache_errors(url)
    assert errors > 0
    assert "result cache is unavailable" in log.read_text()
    assert all(answers[i] == library_text(i, 48) for i in (0, 17, 39))


def test_an_unusable_cache_directory_leaves_generation_working(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {"KEEL_CACHE": "1", "KEEL_CACHE_DIR": str(blocker / "cache")}
    with keel_serve("--model", MODEL, env=env) as url:
        answer = generate(url, 1)
        assert cache_errors(url) > 0
    assert answer["text"] == library_text(1)


def test_the_cache_file_deleted_while_serving(tmp_path):
    env = {"KEEL_CACHE": "1", "KEEL_CACHE_DIR": str(tmp_path)}
    with keel_serve("--model", MODEL, env=env) as url:
        first = generate(url, 2)["text"]
        for path in tmp_path.glob(f"{FILENAME}*"):
            path.unlink()
        again = [generate(url, index)["text"] for index in (2, 3)]
        health = httpx.get(f"{url}/health")
    assert health.status_code == 200
    assert again == [first, library_text(3)]


def test_a_model_file_deleted_or_replaced_after_load(tmp_path):
    from keel.models import resolve_model

    path = tmp_path / "model.gguf"
    shutil.copyfile(resolve_model(MODEL).path, path)
    with keel_serve("--model", str(path), env={"KEEL_CACHE": "0"}) as url:
        before = httpx.post(f"{url}/v1/generate", json=body(1), timeout=60).json()
        path.unlink()
        gone = httpx.post(f"{url}/v1/generate", json=body(1), timeout=60)
        health = httpx.get(f"{url}/health")
        shutil.copyfile(resolve_model("gemma3-270m").path, path)
        replaced = httpx.post(f"{url}/v1/generate", json=body(1), timeout=120).json()
    assert gone.status_code == 503, gone.text
    assert gone.json()["error"]["code"] == "model_not_available"
    assert f"{str(path)!r} does not exist" in gone.json()["error"]["message"]
    assert health.status_code == 200 and health.json()["models"]
    assert replaced["fingerprint"] != before["fingerprint"]
    assert replaced["text"] == library_text(1, model="gemma3-270m")


def prompt_tokens(url: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("keel_prompt_tokens_total"):
            total += float(line.split()[-1])
    return total


def post_then_hang_up(url: str, request: dict) -> socket.socket:
    """A plain POST whose client will close the connection before the answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    payload = json.dumps(request).encode()
    sock.sendall(
        b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


async def occupy_then_abandon(url: str, running: int, waiting: int) -> float:
    """`running` long streams fill the slots; `waiting` streams and as many plain requests
    queue behind them and their clients leave; then the long ones leave too. Returns the
    seconds from the last client leaving to the server being idle."""
    async with httpx.AsyncClient(timeout=60) as client:
        # a regex keeps them from ending early: their slots stay busy until they leave
        endless = [
            {**body(200 + i, max_tokens=1000), "regex": "(ab ){400}"} for i in range(running)
        ]
        long = [client.stream("POST", f"{url}/v1/stream", json=request) for request in endless]
        opened = [await stream.__aenter__() for stream in long]
        lines = [response.aiter_lines() for response in opened]  # kept open: still reading
        for reader in lines:  # each has its first token: every slot is busy
            while not (await anext(reader)).startswith("data:"):
                pass
        for i in range(waiting):
            request = body(300 + i, max_tokens=1000)
            async with client.stream("POST", f"{url}/v1/stream", json=request) as response:
                assert response.status_code == 200  # queued; then the client goes
        plain = [post_then_hang_up(url, body(400 + i, max_tokens=1000)) for i in range(waiting)]
        await asyncio.sleep(0.5)  # queued, and then their clients are gone
        for sock in plain:
            sock.close()
        await asyncio.sleep(0.2)
        for stream in long:
            await stream.__aexit__(None, None, None)
    left = time.perf_counter()
    deadline = left + 30
    while time.perf_counter() < deadline:
        models = httpx.get(f"{url}/health").json()["models"]
        if all(m["running"] == 0 and m["waiting"] == 0 for m in models):
            return time.perf_counter() - left
        await asyncio.sleep(0.02)
    raise AssertionError("the server did not become idle")


def test_waiting_requests_whose_clients_left_are_never_generated():
    with keel_serve("--model", MODEL, env={"KEEL_CACHE": "0"}) as url:
        before = prompt_tokens(url)
        settle = asyncio.run(occupy_then_abandon(url, running=8, waiting=16))
        prefilled = prompt_tokens(url) - before
        one_prompt = generate(url, 200, max_tokens=1)["stats"]["prompt_tokens"]
    assert settle < 2.0  # 32 generations of 1,000 tokens would take minutes
    assert 8 <= prefilled <= 8 * (one_prompt + 2)  # only the 8 that ran were prefilled
