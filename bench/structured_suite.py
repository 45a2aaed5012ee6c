"""Structured output as users write it: every schema of tests/schema_suite.py (mostly without
size bounds) on both bundled models, greedy and at T=0.7 with three seeds.

Reports the share of calls that returned a valid object (the goal is 100%), the median and
worst seconds per object, and every failure. Each model runs in its own process (two
llama.cpp contexts in one process slow each other down), 2 threads, default max_new_tokens.

Usage: python bench/structured_suite.py   (BENCH_MODELS=smollm2-135m to pick models)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import generation_environment

import keel

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from schema_suite import CASES

MODELS = os.environ.get("BENCH_MODELS", "smollm2-135m,gemma3-270m").split(",")
SETTINGS = [
    {"temperature": 0.0},
    {"temperature": 0.7, "seed": 1},
    {"temperature": 0.7, "seed": 2},
    {"temperature": 0.7, "seed": 3},
]


def run_model(model: str) -> dict:
    generation_environment()
    keel.generate("warm-up", model=model, max_new_tokens=4)
    seconds, failures = [], []
    for name, schema, prompt in CASES:
        for setting in SETTINGS:
            start = time.perf_counter()
            try:
                keel.generate_json(prompt, schema, model=model, **setting)
            except keel.KeelError as exc:
                failures.append(f"{name} {setting}: {type(exc).__name__}: {str(exc)[:160]}")
            seconds.append(time.perf_counter() - start)
    return {"model": model, "calls": len(seconds), "seconds": seconds, "failures": failures}


def main() -> None:
    print(f"{len(CASES)} schemas x {len(SETTINGS)} settings per model, 2 threads, no cache")
    print(f"{'model':<14} {'calls':>6} {'valid':>8} {'median s':>9} {'max s':>7}")
    failures = []
    for model in MODELS:
        out = subprocess.run(
            [sys.executable, __file__, "--model", model],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        valid = 1 - len(result["failures"]) / result["calls"]
        print(
            f"{model:<14} {result['calls']:>6} {valid:>8.1%} "
            f"{statistics.median(result['seconds']):>9.2f} {max(result['seconds']):>7.2f}"
        )
        failures += [f"{model}: {failure}" for failure in result["failures"]]
    for failure in failures:
        print("FAILED", failure)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--model":
        print(json.dumps(run_model(sys.argv[2])))
    else:
        main()
