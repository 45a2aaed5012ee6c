"""keel's server against llama-cpp-python's own server, same model, same thread count, one run.

Each server runs in its own process on a loopback port, one after the other. Eight
streaming clients (OpenAI /v1/completions, stream=True) send requests back to back for
BENCH_SECONDS each (default 60): distinct prompts, 64 new tokens, T=0.7. Reported:
aggregate streamed tokens/s, p50/p99 time to first token, requests and errors.

Usage: python bench/server.py   (BENCH_SECONDS=N, BENCH_CLIENTS=N, BENCH_MODEL=name)
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from keel.models import resolve_model

SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
MODEL = os.environ.get("BENCH_MODEL", "smollm2-135m")
THREADS = 2
NEW_TOKENS = 64
TOPICS = ["a lighthouse", "a fox", "the moon", "a train", "a garden", "a storm", "a city", "a ship"]


@dataclass
class Tally:
    tokens: int = 0
    requests: int = 0
    errors: int = 0
    first_token: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], url: str, env: dict) -> subprocess.Popen:
    """Start a server; its log goes to a file (a pipe nobody reads would fill and block it)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server process)
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(log.read().decode(errors="replace")[-2000:])
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{command[0]} did not come up")
        time.sleep(0.25)


def one_request(client: httpx.Client, url: str, index: int, tally: Tally) -> None:
    body = {
        "model": MODEL,
        "prompt": f"Here is a short story about {TOPICS[index % len(TOPICS)]} (#{index}):",
        "max_tokens": NEW_TOKENS,
        "temperature": 0.7,
        "seed": index,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    chunks, usage, first = 0, None, None
    try:
        with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(response.status_code)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    usage = data["usage"]["completion_tokens"]
                if data.get("choices") and data["choices"][0].get("text"):
                    chunks += 1
                    first = first or time.perf_counter() - sent
    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
        with tally.lock:
            tally.errors += 1
            if tally.errors <= 3:
                print(f"  error: {exc!r}", file=sys.stderr)
        return
    with tally.lock:
        tally.requests += 1
        tally.tokens += usage if usage is not None else chunks  # one chunk per token
        if first is not None:
            tally.first_token.append(first)


def load(url: str) -> tuple[Tally, float]:
    tally = Tally()
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + SECONDS

    def client_loop() -> None:
        with httpx.Client(timeout=600) as client:
            while time.perf_counter() < stop_at:
                one_request(client, url, next(counter), tally)

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def run(name: str, command: list[str], env: dict) -> tuple[str, Tally, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start([*command, "--port", str(port)], url, env)
    owner = httpx.get(f"{url}/v1/models").json()["data"][0].get("owned_by")
    print(f"  {name} on port {port}, models owned by {owner!r}", file=sys.stderr)
    try:
        one_request(httpx.Client(timeout=600), url, 0, Tally())  # warm-up
        tally, elapsed = load(url)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return name, tally, elapsed


def main() -> None:
    path = str(resolve_model(MODEL).path)
    keel_cli = str(Path(sys.executable).with_name("keel"))
    keel_env = {"KEEL_THREADS": str(THREADS), "KEEL_CACHE": "0"}
    llama = run(
        "llama_cpp.server",
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            path,
            "--model_alias",
            MODEL,
            "--n_threads",
            str(THREADS),
            "--n_threads_batch",
            str(THREADS),
            "--n_ctx",
            "2048",
            "--n_batch",
            "512",
            "--n_ubatch",
            "512",
            # its default lets each new request abort the one streaming: queue instead
            "--interrupt_requests",
            "False",
        ],
        {},
    )
    ours = run(
        "keel serve", [keel_cli, "serve", "--model", MODEL, "--log-level", "warning"], keel_env
    )
    results = [ours, llama]
    print(
        f"{CLIENTS} streaming clients x {SECONDS:.0f} s, {MODEL}, {THREADS} threads, "
        f"{NEW_TOKENS} new tokens, T=0.7, distinct prompts"
    )
    print(
        f"{'server':<18} {'tok/s':>7} {'ratio':>6} {'requests':>9} {'errors':>7} "
        f"{'TTFT p50 s':>11} {'TTFT p99 s':>11}"
    )
    base = results[1][1].tokens / results[1][2]
    for name, tally, elapsed in results:
        rate = tally.tokens / elapsed
        print(
            f"{name:<18} {rate:>7.1f} {rate / base:>5.2f}x {tally.requests:>9} {tally.errors:>7} "
            f"{percentile(tally.first_token, 50):>11.2f} {percentile(tally.first_token, 99):>11.2f}"
        )


if __name__ == "__main__":
    main()
