"""keel serve when things break underneath it: killed mid-stream and mid-cache-write, a
cache that cannot be written (file size limit, an unusable directory, its file deleted
while serving). Generation goes on, answers stay the same, the cache stays whole."""

from __future__ import annotations

import asyncio
import resource
import signal
import sqlite3

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


def library_text(index: int, max_tokens: int = 16) -> str:
    """The same request through the library (the tests run it with the cache off)."""
    request = body(index, max_tokens)
    return keel.generate(
        request.pop("prompt"),
        model=MODEL,
        max_new_tokens=request.pop("max_tokens"),
        **request,
    )


def generate(url: str, index: int, max_tokens: int = 16) -> dict:
    response = httpx.post(f"{url}/v1/generate", json=body(index, max_tokens), timeout=60)
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
