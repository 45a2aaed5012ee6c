"""Cache hit latency: generate() in-process (warm front layer) and the first hit from a
fresh process (SQLite only), against the miss latency, in one run.

Usage: python bench/cache.py   (uses a temporary cache dir; BENCH_REPEATS=N)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
PROMPT = "Write one sentence about the sea."
KWARGS = {"max_new_tokens": 32, "seed": 7, "temperature": 0.5}  # as the misses

FRESH = """
import json, sys, time
import keel
start = time.perf_counter()
keel.generate(sys.argv[1], **json.loads(sys.argv[2]))
elapsed = time.perf_counter() - start
from keel.loaded import any_loaded
print(json.dumps({"seconds": elapsed, "model_loaded": any_loaded()}))
"""


def fresh_process_hit() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FRESH, PROMPT, json.dumps(KWARGS)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return json.loads(out.stdout)


def main() -> None:
    os.environ["KEEL_CACHE_DIR"] = tempfile.mkdtemp(prefix="keel-bench-cache-")
    os.environ["KEEL_CACHE"] = "1"
    os.environ["KEEL_THREADS"] = "2"
    import keel

    keel.preload_models()
    misses = []
    for seed in range(REPEATS):
        start = time.perf_counter()
        keel.generate(PROMPT, max_new_tokens=32, seed=1000 + seed, temperature=0.5)
        misses.append(time.perf_counter() - start)
    keel.generate(PROMPT, **KWARGS)  # populate
    keel.generate(PROMPT, **KWARGS)  # warm the front layer
    n = 20000
    batches = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(n):
            keel.generate(PROMPT, **KWARGS)
        batches.append((time.perf_counter() - start) / n)
    from keel.cache import result_cache

    result_cache().flush()
    fresh = [fresh_process_hit() for _ in range(REPEATS)]
    assert not any(run["model_loaded"] for run in fresh), "a cache hit loaded the model"
    miss = statistics.median(misses)
    rows = [
        ("miss (generate, 32 tokens)", miss),
        ("hit, in-process (front layer)", statistics.median(batches)),
        ("hit, fresh process (SQLite)", statistics.median(run["seconds"] for run in fresh)),
    ]
    print(f"median of {REPEATS}; fresh-process time is the first generate() after import")
    print(f"{'case':<32} {'latency':>12} {'vs miss':>10}")
    for name, seconds in rows:
        print(f"{name:<32} {seconds * 1e6:>10.1f}us {miss / seconds:>9.0f}x")


if __name__ == "__main__":
    main()
