"""keel's remote path against the openai client calling the same server directly.

One `keel serve` process (its cache off, so every request generates) answers two client
runners, each in its own process and run in turn, twice (openai, keel, openai, keel): the
openai package streaming /v1/chat/completions itself, and keel.generate_iter with
model="keel:...". Per request: time to the first text and tokens/s after it (pieces
received / time from first to last), beside the limit: the bare loop of bench/common.py
on the same prompt (greedy, one row, raw), in a process of its own before the server
starts. Then, in one more process, the in-process cache-hit latency of generate() for a
remote result, beside a local model's hit.

Usage: python bench/remote.py   (BENCH_REPEATS=N requests per runner and round, default 7)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bare_batch_rate, in_fresh_process, main_or_runner

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
PROMPT = "Write a short story about a lighthouse keeper."
MODEL = "smollm2-135m"
TOKENS = 128


def _first_and_rate(pieces) -> tuple[float, float, float]:
    """(seconds to the first piece, pieces per second after it, client CPU seconds per
    piece) of one streamed request. The CPU figure is the steadiest: on a shared machine
    the client's CPU is taken from the server."""
    start, cpu = time.perf_counter(), time.process_time()
    first = last = None
    count = 0
    for _ in pieces:
        last = time.perf_counter()
        first = first or last
        count += 1
    assert first is not None and last is not None
    return first - start, (count - 1) / (last - first), (time.process_time() - cpu) / count


def _openai_runner(url: str) -> list[tuple[float, float, float]]:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")

    def pieces():
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=TOKENS,
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return _measure(pieces)


def _keel_runner(url: str) -> list[tuple[float, float, float]]:
    import keel

    def pieces():
        options = {"model": f"keel:{MODEL}", "base_url": url, "cache": False}
        yield from keel.generate_iter(PROMPT, max_new_tokens=TOKENS, **options)

    return _measure(pieces)


def _measure(pieces) -> list[tuple[float, float, float]]:
    _first_and_rate(pieces())  # warm-up: connections, imports, the server's prompt
    return [_first_and_rate(pieces()) for _ in range(REPEATS)]


def _hit_runner(url: str) -> dict[str, float]:
    """Median µs per generate() call answered from the cache, remote and local."""
    import keel

    remote = {"model": f"keel:{MODEL}", "base_url": url, "max_new_tokens": 16}
    local = {"model": MODEL, "max_new_tokens": 16}
    result = {}
    for name, options in (("remote", remote), ("local", local)):
        keel.generate(PROMPT, **options)  # the miss that fills the cache
        keel.generate(PROMPT, **options)
        batches = []
        for _ in range(REPEATS):
            calls = 20000
            start = time.perf_counter()
            for _ in range(calls):
                keel.generate(PROMPT, **options)
            batches.append((time.perf_counter() - start) / calls * 1e6)
        result[name] = statistics.median(batches)
    return result


RUNNERS = {"openai": _openai_runner, "keel": _keel_runner, "hit": _hit_runner}


def _child(runner: str, url: str, env: dict[str, str]) -> object:
    out = subprocess.run(
        [sys.executable, __file__, "--runner", runner, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def limit_rate() -> float:
    """Tokens/s of the bare loop on PROMPT, one greedy row: the most one stream could get."""
    return bare_batch_rate(MODEL, [PROMPT], TOKENS)


def main() -> None:
    from serving import keel_serve

    limit = float(in_fresh_process(__file__, "--limit"))
    cache_dir = tempfile.mkdtemp(prefix="keel-bench-remote-")
    quiet = {"KEEL_THREADS": "2", "KEEL_CACHE": "0"}
    with keel_serve("--model", MODEL, env=quiet) as url:
        samples: dict[str, list[tuple[float, float, float]]] = {"openai": [], "keel": []}
        for _ in range(2):
            for runner in samples:
                samples[runner] += _child(runner, url, quiet)
        hits = _child("hit", url, {"KEEL_CACHE": "1", "KEEL_CACHE_DIR": cache_dir})
    ttft = {name: statistics.median(s[0] for s in runs) * 1000 for name, runs in samples.items()}
    rate = {name: statistics.median(s[1] for s in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(s[2] for s in runs) * 1e6 for name, runs in samples.items()}
    print(f"keel serve ({MODEL}, 2 threads, greedy, {TOKENS} tokens), {2 * REPEATS} requests each")
    print(
        f"{'client':<34}{'TTFT ms':>10}{'+ms':>8}{'tokens/s':>10}{'ratio':>8}"
        f"{'CPU µs/token':>14}{'+µs':>7}"
    )
    labels = {"openai": "openai package, direct", "keel": "keel.generate_iter, keel:"}
    for name, label in labels.items():
        added = ttft[name] - ttft["openai"]
        ratio = rate[name] / rate["openai"]
        print(
            f"{label:<34}{ttft[name]:>10.2f}{added:>8.2f}{rate[name]:>10.1f}{ratio:>8.3f}"
            f"{cpu[name]:>14.0f}{cpu[name] - cpu['openai']:>7.0f}"
        )
    label = "bare loop on keel's engine (limit)"
    print(f"{label:<34}{'':>10}{'':>8}{limit:>10.1f}{limit / rate['openai']:>8.3f}")
    print()
    print(f"{'cache hit, generate() in-process':<34}{'µs':>10}{'ratio':>8}")
    for name in ("local", "remote"):
        print(f"{name:<34}{hits[name]:>10.2f}{hits[name] / hits['local']:>8.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--runner":
        print(json.dumps(RUNNERS[sys.argv[2]](sys.argv[3])))
    else:
        main_or_runner(main, one_shots={"--limit": limit_rate})
