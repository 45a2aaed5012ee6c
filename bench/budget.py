"""Where a served token's time goes: `keel serve` under bench/server.py's streaming load,
with each stage of the per-token path timed inside the server process.

The server runs in its own process (this file with --serve) with timing wrappers around
the stages; this process drives the clients and, after a warm-up, tells the server over
its stdin to start counting and then to write its tallies. Two loads: bench/server.py's
(distinct prompts, 64 new tokens, alternately greedy and seeded T=0.7) and the same with a
JSON schema, so the grammar's share shows. Beside the served decode step, its limit: the
same step on the load's prompts in a plain loop on keel's engine, in a process of its own
run just before the server starts.

The thread that runs the model's rounds alternates llama_decode (wall time, split into
generated-token steps and prompt chunks) with the time between two decodes (wall). Apart
from the decodes: the wait just before each one starts, when the thread lets go of the
GIL (llama_set_n_threads, a ctypes call) and the event loop, woken to send the step's
tokens, takes it and sends them before the decode can start. Within
that time, the CPU of each stage: the logits view, the sampler (and within it the T > 0
rows' noisy argmax), the grammar (mask, closing checks, taking the token),
detokenization (token piece, UTF-8 assembly, stop strings), building the event, the rest
of `advance` (stats) and handing the event to its stream; what the stages leave of the
wall time is mostly waiting for the GIL while the event loop runs. On other threads, CPU
taken from the same two cores, during the decode or between decodes: the event loop
(HTTP, SSE, JSON, request handling); and the CPU of the bench's own clients, which share
the machine with any server bench/server.py measures. Each wrapper adds about 1 µs.

Usage: python bench/budget.py
       (BENCH_CLIENTS=8, BENCH_SECONDS=15, BENCH_THREADS=2, BENCH_MODEL=name)
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import bare_batch_steps, in_fresh_process, main_or_runner
from server import (
    MODEL,
    NEW_TOKENS,
    THREADS,
    bare_prompts,
    keel_serve,
    load,
    percentile,
    server_process,
)

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
WARM_UP = 4.0
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "year": {"type": "integer"},
        "characters": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["title", "year", "characters"],
}
LOADS: dict[str, dict[str, Any]] = {
    "plain": {},
    "JSON schema": {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
}

# -- inside the server process ----------------------------------------------------------

_samples: dict[str, list[float]] = defaultdict(list)  # stage -> seconds per call
GIL_WAIT = "GIL wait"
# (start, end, rows, logits for every row (generated tokens, not a prompt), seconds of it
# spent waiting for the GIL before the decode)
_decodes: list[tuple[float, float, int, bool, float]] = []


def _timed(owner: Any, name: str, stage: str, clock: Callable[[], float]) -> None:
    """Replace owner.name with a wrapper that adds each call's duration to `stage`."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            _samples[stage].append(clock() - start)

    setattr(owner, name, wrapper)


def _instrument() -> None:
    from keel import detok, generation, sampling, scheduler
    from keel.engine import context, vocab
    from keel.engine.library import llama
    from keel.structured import session

    decode = context.LlamaContext._decode

    def timed_decode(self: Any, entries: list[Any], outputs: list[bool]) -> None:
        waits = _samples[GIL_WAIT]
        before = len(waits)
        start = time.perf_counter()
        decode(self, entries, outputs)
        waited = sum(waits[before:])
        _decodes.append((start, time.perf_counter(), len(entries), all(outputs), waited))

    context.LlamaContext._decode = timed_decode  # type: ignore[method-assign]
    # wall, not CPU: the call sets two ints; what takes time is getting the GIL back
    _timed(llama(), "llama_set_n_threads", GIL_WAIT, time.perf_counter)
    cpu = time.thread_time  # CPU, not wall: a wall clock would also count GIL waits
    _timed(context.LlamaContext, "logits", "logits view", cpu)
    _timed(generation, "sample", "sampler", cpu)
    # the grammar's work inside advance (its mask, its closing checks, taking the token);
    # a request's budget check before it starts is not per token
    for owner, method in [
        (generation.Generation, "_scores"),
        (generation.Generation, "_within_budget"),
        (session.ConstraintSession, "advance"),
        (session.ConstraintSession, "finished"),
    ]:
        _timed(owner, method, "grammar", cpu)
    _timed(vocab.Vocabulary, "piece", "detok", cpu)
    _timed(detok.Utf8Assembler, "feed", "detok", cpu)
    _timed(detok.StopMatcher, "feed", "detok", cpu)
    _timed(detok.StopMatcher, "flush", "detok", cpu)
    _timed(generation.Generation, "_event", "event", cpu)
    _timed(generation.Generation, "advance", "advance", cpu)
    _timed(scheduler.Job, "emit", "fan-out", cpu)
    _timed(sampling, "_noisy_argmax", "noise", cpu)  # inside the sampler's figure


def _event_loop_cpu() -> float:
    """CPU seconds of this process's main thread, where uvicorn runs the event loop."""
    stat = Path(f"/proc/self/task/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _control() -> None:
    """Commands on stdin: 'reset' starts a window, 'dump PATH' writes its tallies."""
    started, loop_before = time.perf_counter(), _event_loop_cpu()
    for line in sys.stdin:
        command, _, path = line.strip().partition(" ")
        if command == "reset":
            _samples.clear()
            _decodes.clear()
            started, loop_before = time.perf_counter(), _event_loop_cpu()
        elif command == "dump":
            tallies = {
                "seconds": time.perf_counter() - started,
                "samples": dict(_samples),
                "decodes": list(_decodes),
                "event loop": _event_loop_cpu() - loop_before,
            }
            written = Path(f"{path}.part")
            written.write_text(json.dumps(tallies))
            written.replace(path)  # whole, so the reader never sees half a file


def serve(arguments: list[str]) -> None:
    _instrument()
    threading.Thread(target=_control, daemon=True).start()
    from keel.cli import main

    main(["serve", *arguments])


# -- the driving process -----------------------------------------------------------------


def window(process: Any, url: str, extra: dict[str, Any], first: int) -> dict[str, Any]:
    """A warm-up, then one counted window of the load; the server's tallies and the
    tokens the clients received."""
    load(url, CLIENTS, first, seconds=WARM_UP, extra=extra)
    process.stdin.write(b"reset\n")
    process.stdin.flush()
    clients_cpu = time.process_time()
    tally, elapsed = load(url, CLIENTS, first + 10**5, seconds=SECONDS, extra=extra)
    clients_cpu = time.process_time() - clients_cpu
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tallies.json"
        process.stdin.write(f"dump {path}\n".encode())
        process.stdin.flush()
        while not path.exists():
            time.sleep(0.05)
        tallies: dict[str, Any] = json.loads(path.read_text())
    tallies.update(tokens=tally.tokens, errors=tally.errors, elapsed=elapsed, clients=clients_cpu)
    return tallies


def report(name: str, tallies: dict[str, Any], bare: float) -> None:
    seconds, samples = tallies["seconds"], tallies["samples"]
    tokens = len(samples.get("advance", [])) or 1  # tokens sampled in the window
    decodes = sorted(tallies["decodes"])
    steps = [(end - start - wait, rows) for start, end, rows, logits, wait in decodes if logits]
    prompts = [end - start - wait for start, end, _, logits, wait in decodes if not logits]
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(decodes) if b[0] > a[1]]
    full = [took for took, rows in steps if rows == CLIENTS]
    print(
        f"\n{name}: {tallies['tokens'] / tallies['elapsed']:.1f} tok/s at the clients, "
        f"errors {tallies['errors']}; {tokens} tokens sampled in {seconds:.1f} s by "
        f"{len(steps)} generated-token decodes (mean batch "
        f"{sum(rows for _, rows in steps) / max(len(steps), 1):.2f}) and {len(prompts)} "
        f"prompt decodes"
    )
    if full:
        print(
            f"  {CLIENTS}-row decode p50 {statistics.median(full) * 1e3:.2f} ms (in a plain loop "
            f"alone: {bare * 1e3:.2f} ms); between two "
            f"decodes p50 {percentile(gaps, 50) * 1e3:.2f} ms, "
            f"p90 {percentile(gaps, 90) * 1e3:.2f} ms"
        )
    total = {stage: sum(values) for stage, values in samples.items()}
    after_sampler = ["grammar", "detok", "event"]  # advance's other timed stages
    inside = ["sampler", *after_sampler]
    rows = [
        ("decode, generated tokens (wall)", sum(took for took, _ in steps), "model rounds"),
        ("decode, prompts (wall)", sum(prompts), "model rounds"),
        ("before a decode: GIL held by the event loop", sum(d[4] for d in decodes), "model rounds"),
        ("between decodes (wall)", sum(gaps), "model rounds"),
        ("  CPU: logits view", total.get("logits view", 0.0), ""),
        ("  CPU: sampler", total.get("sampler", 0.0), ""),
        ("    of which the T > 0 choice (noise)", total.get("noise", 0.0), ""),
        *((f"  CPU: {stage}", total.get(stage, 0.0), "") for stage in after_sampler),
        (
            "  CPU: rest of advance (stats)",
            total.get("advance", 0.0) - sum(total.get(stage, 0.0) for stage in inside),
            "",
        ),
        ("  CPU: fan-out (event to its stream)", total.get("fan-out", 0.0), ""),
        ("HTTP, SSE, requests (CPU)", tallies["event loop"], "event loop"),
        ("the bench's clients (CPU, another process)", tallies["clients"], "clients"),
    ]
    print(f"  {'stage':44} {'thread':13} {'µs/token':>9} {'% of wall':>10}")
    for stage, spent, thread in rows:
        share = spent / seconds * 100
        print(f"  {stage:44} {thread:13} {spent / tokens * 1e6:9.1f} {share:9.1f}%")


def bare_step() -> float:
    """Median seconds of the load's decode step in the bare loop (bench/common.py), in a
    process of its own (main_or_runner's one-shot) with keel serve's threads."""
    return statistics.median(bare_batch_steps(MODEL, bare_prompts(CLIENTS), NEW_TOKENS))


def main() -> None:
    bare = float(in_fresh_process(__file__, "--bare"))
    command, env = keel_serve()
    command = [sys.executable, __file__, "--serve", *command[2:]]
    print(f"{MODEL}, {THREADS} threads, {CLIENTS} clients, {SECONDS:.0f} s windows")
    with server_process(command, env, stdin=True) as (url, process):
        for index, (name, extra) in enumerate(LOADS.items()):
            report(name, window(process, url, extra, first=index * 10**6), bare)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2:])
    else:
        main_or_runner(main, one_shots={"--bare": bare_step})
