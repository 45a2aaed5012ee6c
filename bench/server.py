"""keel serve against llama.cpp's own C++ server (llama-server) and llama-cpp-python's server:
same GGUF, 2 threads, one run. keel runs twice: as it starts by default (one context per
model) and with KEEL_LANES=2 (two contexts on the same weights).

Each server runs in its own process on a loopback port. All are started first and take
turns: at 1, 2, 4 and 8 concurrent streaming clients (OpenAI /v1/completions,
stream=True), each round gives every server a window of BENCH_SECONDS (the order rotates
from round to round) in which requests go back to back: distinct prompts, 64 new tokens,
alternately greedy and seeded T=0.7. A shared VM's speed drifts by tens of percent within
a minute, so the ratio of a level is the median over BENCH_ROUNDS rounds of the ratio
between windows seconds apart, not of runs minutes apart. The servers that wait use next
to no CPU (measured each window and printed: a server that did would slow the one
measured).

The limit row is a bare loop on keel's engine decoding one greedy token for each client's
prompt per step (bench/common.py), measured in a process of its own before the servers
start: the most a server could stream, prompts and HTTP aside.

Reported per level: output tokens/s (median of the windows; a window counts the tokens
that streamed inside it, so that the requests still running at its end, which finish with
fewer and fewer clients, do not count as that level), the paired ratio, the middle half
of the rounds' ratios (their spread) and the median ratio's 95% confidence interval (an
interval that excludes 1.00 is a difference the run resolved), requests/s, time to first
token and inter-token latency (p50/p99), errors, and the determinism rate: the share of
the 8-client responses (up to BENCH_CHECKS of them) that are byte-identical to the same
request sent alone to a freshly started server.

llama-server is built once from the llama.cpp inside llama-cpp-python's source
distribution (scripts/llama-server.sh, the same commit and CPU flags as keel's engine);
set BENCH_LLAMA_SERVER=0 to leave it out. It runs twice: with its defaults (flash attention
on, f16 K and V caches) and with keel's attention settings (flash attention on, f16 K and
bf16 V caches: the invariant one-row kernel, see docs/determinism.md).

BENCH_TWIN=1 adds a second, identical keel serve and prints the paired ratio between the
two: what the machine's drift alone does to a ratio (the noise floor of every other one),
and keel's ratio to llama-server over both copies (the mean of their ratios each round).
BENCH_TWIN=<path of another keel checkout> runs the twin from that checkout's code
(e.g. `git worktree add /tmp/base HEAD`; its C extension is built there first): the same
ratio then measures a change.

Usage: python bench/server.py   (BENCH_SECONDS=N per window, BENCH_ROUNDS=N,
BENCH_LEVELS=1,2,4,8, BENCH_MODEL=name, BENCH_THREADS=2, BENCH_TWIN=0,
BENCH_SAVE=<a JSON file for every window's tok/s>)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from common import bare_batch_rate, in_fresh_process, main_or_runner, median_interval

from keel.engine.context import ContextSettings
from keel.models import resolve_model

SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
LEVELS = [int(n) for n in os.environ.get("BENCH_LEVELS", "1,2,4,8").split(",")]
CHECKS = int(os.environ.get("BENCH_CHECKS", "24"))
TWIN = os.environ.get("BENCH_TWIN", "0")
TWIN_NAME = "keel serve, twin"
SAVE = os.environ.get("BENCH_SAVE", "")  # a JSON file for every window's tok/s
FEW = os.environ.get("BENCH_FEW") == "1"  # only these servers, for a quicker A/B:
# keel, its twin, and llama-server with its own attention kernels and with keel's (the
# price of invariant attention is the gap between those two; bench/attention.py)
FEW_NAMES = {"keel serve", TWIN_NAME, "llama-server -np 8", "llama-server keel-kv"}
MODEL = os.environ.get("BENCH_MODEL", "smollm2-135m")
THREADS = int(os.environ.get("BENCH_THREADS", "2"))  # for every server
NEW_TOKENS = 64
TOPICS = ["a lighthouse", "a fox", "the moon", "a train", "a garden", "a storm", "a city", "a ship"]
ROOT = Path(__file__).parents[1]


@dataclass
class Tally:
    tokens: int = 0
    in_window: int = 0  # of those, the tokens that streamed before their window ended
    requests: int = 0
    errors: int = 0
    first_token: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)  # between streamed pieces
    texts: dict[int, str] = field(default_factory=dict)  # request index -> its text
    lock: threading.Lock = field(default_factory=threading.Lock)

    def absorb(self, other: Tally) -> None:
        """Add another tally's requests to this one."""
        self.tokens += other.tokens
        self.in_window += other.in_window
        self.requests += other.requests
        self.errors += other.errors
        self.first_token.extend(other.first_token)
        self.gaps.extend(other.gaps)
        self.texts.update(other.texts)


def free_port() -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from serving import free_port as probe

    return probe()


@contextmanager
def serving(command: list[str], env: dict) -> Iterator[str]:
    """A server in its own process; yields its URL."""
    with server_process(command, env) as (url, _):
        yield url


@contextmanager
def server_process(
    command: list[str], env: dict, stdin: bool = False
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A server in its own process; its log goes to a file (a pipe nobody reads would
    fill and block it). Yields its URL and process (with a pipe to its stdin if asked)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server process)
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, **env},
        stdin=subprocess.PIPE if stdin else None,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(log.read().decode(errors="replace")[-2000:])
            try:
                listed = httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
                # llama-server lists its model before loading it; /health says 503 till then
                if listed and httpx.get(f"{url}/health", timeout=2).status_code != 503:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not come up")
            time.sleep(0.25)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=60)


def request_body(index: int, model: str = MODEL) -> dict:
    return {
        "model": model,
        "prompt": f"Here is a short story about {TOPICS[index % len(TOPICS)]} (#{index}):",
        "max_tokens": NEW_TOKENS,
        "temperature": 0.7 if index % 2 else 0.0,
        "seed": index,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def new_client() -> httpx.Client:
    """A new connection per request: llama-server closes idle keep-alive connections,
    which would count as errors against it."""
    return httpx.Client(timeout=600, limits=httpx.Limits(max_keepalive_connections=0))


def one_request(
    client: httpx.Client,
    url: str,
    index: int,
    tally: Tally,
    model: str = MODEL,
    extra: dict | None = None,
    until: float = math.inf,
) -> None:
    """One streamed request (request_body's, with `extra` fields added), into `tally`;
    its tokens that streamed after `until` (perf_counter), the end of its window, count in
    tally.tokens but not in tally.in_window."""
    sent = time.perf_counter()
    pieces: list[str] = []
    stamps: list[float] = []
    usage = None
    try:
        body = {**request_body(index, model), **(extra or {})}
        with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(response.status_code)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:  # a failure after the 200: the stream's last event
                    raise RuntimeError(data["error"])
                if data.get("usage"):
                    usage = data["usage"]["completion_tokens"]
                if data.get("choices") and data["choices"][0].get("text"):
                    pieces.append(data["choices"][0]["text"])
                    stamps.append(time.perf_counter())
    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
        with tally.lock:
            tally.errors += 1
            if tally.errors <= 3:
                print(f"  error: {exc!r}", file=sys.stderr)
        return
    with tally.lock:
        tally.requests += 1
        tokens = usage if usage is not None else len(pieces)
        tally.tokens += tokens
        if stamps and stamps[-1] >= until:  # a token a chunk, but for held-back text
            tokens = sum(stamp < until for stamp in stamps)
        tally.in_window += tokens
        tally.texts[index] = "".join(pieces)
        if stamps:
            tally.first_token.append(stamps[0] - sent)
            tally.gaps.extend(b - a for a, b in itertools.pairwise(stamps))


def load(
    url: str,
    clients: int,
    first_index: int,
    model: str = MODEL,
    seconds: float = SECONDS,
    extra: dict | None = None,
) -> tuple[Tally, float]:
    """`clients` streaming clients sending requests back to back for `seconds`; the
    requests still running then finish. Returns the tally and the seconds until they
    have."""
    tally = Tally()
    counter = iter(range(first_index, 10**9))
    stop_at = time.perf_counter() + seconds

    def client_loop() -> None:
        with new_client() as client:
            while time.perf_counter() < stop_at:
                one_request(client, url, next(counter), tally, model, extra, stop_at)

    return tally, in_threads(clients, client_loop)


def in_threads(count: int, work: Callable[[], None]) -> float:
    """Run `work` in `count` threads at once; the seconds until all have returned."""
    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def alone(url: str, indices: list[int]) -> dict[int, str]:
    """Each request sent alone, one after the other."""
    tally = Tally()
    with new_client() as client:
        for index in indices:
            one_request(client, url, index, tally)
    return tally.texts


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Level:
    """One server at one client count, over all its windows."""

    clients: int
    tally: Tally = field(default_factory=Tally)
    elapsed: float = 0.0
    rates: list[float] = field(default_factory=list)  # tok/s of each window, round by round

    def add(self, window: Tally, elapsed: float, seconds: float) -> None:
        """A window of `seconds` whose last requests finished `elapsed` seconds after it
        began. Its tok/s counts only what streamed inside it: the requests that finish
        after it, with fewer and fewer clients left, would mix the drain into the level."""
        self.tally.absorb(window)
        self.elapsed += elapsed
        self.rates.append(window.in_window / seconds)

    def ratios_to(self, base: Level) -> list[float]:
        """tok/s over `base`'s, window by window: the two ran seconds apart in each round."""
        return [rate / other for rate, other in zip(self.rates, base.rates, strict=True)]


@dataclass
class Runner:
    name: str
    command: list[str]
    env: dict
    url: str = ""
    pid: int = 0
    levels: dict[int, Level] = field(default_factory=dict)
    idle_cpu: float = 0.0  # the most CPU (share of a core) it used while another was measured
    determinism: float = float("nan")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def take_turns(runners: list[Runner]) -> None:
    """Every level, ROUNDS rounds of one window per server, the order rotating, while the
    other servers wait; records how much CPU each used while it waited."""
    first_index = itertools.count(step=10**4)  # distinct prompts in every window
    for clients in LEVELS:
        for runner in runners:
            runner.levels[clients] = Level(clients)
        for round_ in range(ROUNDS):
            shift = round_ % len(runners)
            for runner in runners[shift:] + runners[:shift]:
                waiting = [other for other in runners if other is not runner]
                before = [cpu_seconds(other.pid) for other in waiting]
                window, elapsed = load(runner.url, clients, next(first_index))
                for other, start in zip(waiting, before, strict=True):
                    used = (cpu_seconds(other.pid) - start) / elapsed
                    other.idle_cpu = max(other.idle_cpu, used)
                runner.levels[clients].add(window, elapsed, SECONDS)
        print(f"  {clients} clients done", file=sys.stderr)


def check_determinism(runner: Runner) -> None:
    """The busiest level's responses against the same requests sent alone to a fresh
    server (nothing cached, nothing warm)."""
    busiest = runner.levels[LEVELS[-1]].tally.texts
    checked = sorted(busiest)[:CHECKS]
    with serving(runner.command, runner.env) as url:
        solo = alone(url, checked)
    same = sum(busiest[index] == solo.get(index) for index in checked)
    runner.determinism = same / len(checked) if checked else float("nan")


def run_all(runners: list[Runner]) -> None:
    with ExitStack() as servers:
        for runner in runners:
            runner.url, process = servers.enter_context(server_process(runner.command, runner.env))
            runner.pid = process.pid
            alone(runner.url, [10**8])  # warm-up
        take_turns(runners)
    for runner in runners:
        check_determinism(runner)


def llama_server_binary() -> str | None:
    if os.environ.get("BENCH_LLAMA_SERVER", "1") == "0":
        return None
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "llama-server.sh"), sys.executable],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def keel_serve() -> tuple[list[str], dict]:
    """keel serve's command and environment (2 threads, no result cache)."""
    keel_cli = str(Path(sys.executable).with_name("keel"))
    return (
        [keel_cli, "serve", "--model", MODEL, "--log-level", "warning"],
        {"KEEL_THREADS": str(THREADS), "KEEL_CACHE": "0"},
    )


def build_extensions_in_place(checkout: Path) -> None:
    """Build the checkout's C extensions and put them beside their sources, as an editable
    install would: the twin imports keel from the checkout's tree. uv builds the wheel in
    an isolated environment, as the project's own installs do."""
    uv = Path(sys.executable).with_name("uv")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([uv, "build", "--quiet", "--wheel", "--out-dir", out, checkout], check=True)
        with zipfile.ZipFile(next(Path(out).glob("*.whl"))) as wheel:
            for name in wheel.namelist():
                if name.endswith((".so", ".pyd")):
                    wheel.extract(name, checkout)


def twin_serve(checkout: Path, command: list[str], env: dict) -> tuple[list[str], dict]:
    """keel serve from another checkout's code: its keel is imported ahead of the installed
    one. PYTHONSAFEPATH keeps `python -m` from putting the working directory first on the
    path, where the installed checkout (this one, run from its root) would win unseen: for
    a while every twin here ran this checkout's code. Checked before any server starts."""
    if not (checkout / "keel" / "__init__.py").is_file():
        raise SystemExit(f"BENCH_TWIN={TWIN!r}: give 0, 1 or the path of a keel checkout")
    if any((checkout / "keel").rglob("*.c")):
        build_extensions_in_place(checkout)
    env = {**env, "PYTHONPATH": str(checkout), "PYTHONSAFEPATH": "1"}
    found = subprocess.run(
        [sys.executable, "-c", "import keel; print(keel.__file__)"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(checkout):
        raise SystemExit(f"BENCH_TWIN: the twin would import {found}, not {checkout}'s keel")
    return [sys.executable, "-m", "keel", *command[1:]], env


def servers(path: str) -> dict[str, tuple[list[str], dict]]:
    command, env = keel_serve()
    found: dict[str, tuple[list[str], dict]] = {
        "keel serve": (command, env),
        # two contexts on the same weights, each decoding with one thread while both work
        "keel serve, 2 lanes": (command, {**env, "KEEL_LANES": "2"}),
    }
    if TWIN == "1":
        found[TWIN_NAME] = (command, env)
    elif TWIN != "0":
        found[TWIN_NAME] = twin_serve(Path(TWIN).resolve(), command, env)
    binary = llama_server_binary()
    if binary:
        llama_server = [
            binary, "-m", path, "--alias", MODEL, "-t", str(THREADS), "-tb", str(THREADS),
            "-np", "8", "-c", str(2048 * 8), "-b", "512", "-ub", "512", "--host", "127.0.0.1",
        ]  # fmt: skip
        found["llama-server -np 8"] = (llama_server, {})
        # keel's attention kernels: K and V of different types keep llama.cpp's CPU flash
        # attention off its split-KV and tiled paths, which depend on threads and batch
        keel_kv = ["-fa", "on", "-ctk", ContextSettings.k_type, "-ctv", ContextSettings.v_type]
        found["llama-server keel-kv"] = ([*llama_server, *keel_kv], {})
    found["llama_cpp.server"] = (
        [sys.executable, "-m", "llama_cpp.server", "--model", path, "--model_alias", MODEL,
         "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS), "--n_ctx", "2048",
         "--n_batch", "512", "--n_ubatch", "512",
         # its default lets each new request abort the one streaming: queue instead
         "--interrupt_requests", "False"],
        {},
    )  # fmt: skip
    return found


def bare_prompts(count: int) -> list[str]:
    """The load's first `count` prompts, for a bare loop bounding the load; sets this
    process (a one-shot of its own) to keel serve's threads first."""
    os.environ.update(keel_serve()[1])
    return [request_body(index)["prompt"] for index in range(count)]


def bare_load_rate(clients: int) -> float:
    """tok/s of a bare batched decode loop on keel's engine (bench/common.py) with the
    load's first `clients` prompts: the most a server could stream to that many clients,
    prompts and HTTP aside. Call it in a process of its own before any server starts."""
    return bare_batch_rate(MODEL, bare_prompts(clients), NEW_TOKENS)


def measure_limits() -> dict[int, float]:
    """bare_load_rate at each level; run by main in a process of its own."""
    return {clients: bare_load_rate(clients) for clients in LEVELS}


def interval(ratios: list[float]) -> str:
    """The median ratio's 95% confidence interval, as printed."""
    bounds = median_interval(ratios)
    return "too few rounds" if bounds is None else f"{bounds[0]:.3f}-{bounds[1]:.3f}x"


def print_ratios(clients: int, ratios: list[float]) -> None:
    print(
        f"{clients:>3} clients: median {statistics.median(ratios):.3f}x "
        f"(95% CI {interval(ratios)}), rounds {min(ratios):.2f}-{max(ratios):.2f}x"
    )


def print_twin(keel: Runner, twin: Runner, anchor: Runner) -> None:
    """keel against its twin: with the same code, any ratio but 1.00 is the machine's
    drift; with another checkout's, it is the change's effect (above 1: faster). With the
    same code, keel's ratio to the anchor is also given over both copies (the mean of
    their two ratios each round): less of the machine's drift on keel's side."""
    print()
    source = "the same code" if TWIN == "1" else TWIN
    print(f"keel serve / its twin ({source}), paired by round")
    for clients, level in keel.levels.items():
        print_ratios(clients, level.ratios_to(twin.levels[clients]))
    if TWIN != "1":
        return
    print(f"keel serve and its twin / {anchor.name}, the mean of the two ratios each round")
    for clients, level in keel.levels.items():
        base = anchor.levels[clients]
        both = zip(level.ratios_to(base), twin.levels[clients].ratios_to(base), strict=True)
        print_ratios(clients, [(one + other) / 2 for one, other in both])


def save_rates(runners: list[Runner], path: str) -> None:
    """Every window's tok/s, by server and level, for analyses the tables leave out."""
    rates = {
        runner.name: {clients: level.rates for clients, level in runner.levels.items()}
        for runner in runners
    }
    Path(path).write_text(json.dumps(rates, indent=1))


def main() -> None:
    path = str(resolve_model(MODEL).path)
    limit = {int(level): rate for level, rate in in_fresh_process(__file__, "--limits").items()}
    runners = [
        Runner(name, command, env)
        for name, (command, env) in servers(path).items()
        if not FEW or name in FEW_NAMES
    ]
    run_all(runners)
    by_name = {runner.name: runner for runner in runners}
    anchor = by_name.get("llama-server -np 8") or by_name["llama_cpp.server"]
    print(
        f"{MODEL}, {THREADS} threads, {NEW_TOKENS} new tokens, distinct prompts, greedy and "
        f"T=0.7 alternately; {ROUNDS} rounds of a {SECONDS:.0f} s window per server and "
        f"level; tok/s = median window; ratio = median of tok/s / {anchor.name}'s in the "
        "same round, the middle half of those rounds' ratios, and the median's 95% "
        "confidence interval (order statistics: no assumption about the spread)"
    )
    print(
        f"{'server':<20} {'clients':>7} {'tok/s':>7} {'ratio':>6} {'middle half':>11} "
        f"{'95% CI':>13} "
        f"{'req/s':>6} {'errors':>6} {'TTFT p50':>9} {'p99':>6} {'ITL p50':>8} {'p99':>6}  (ms)"
    )
    for runner in runners:
        for clients, level in runner.levels.items():
            tally = level.tally
            ratios = level.ratios_to(anchor.levels[clients])
            spread = f"{percentile(ratios, 25):.2f}-{percentile(ratios, 75):.2f}x"
            print(
                f"{runner.name:<20} {clients:>7} {statistics.median(level.rates):>7.1f} "
                f"{statistics.median(ratios):>5.2f}x {spread:>11} {interval(ratios):>13} "
                f"{tally.requests / level.elapsed:>6.2f} {tally.errors:>6} "
                f"{percentile(tally.first_token, 50) * 1000:>9.0f} "
                f"{percentile(tally.first_token, 99) * 1000:>6.0f} "
                f"{percentile(tally.gaps, 50) * 1000:>8.1f} "
                f"{percentile(tally.gaps, 99) * 1000:>6.1f}"
            )
    for clients, rate in limit.items():
        anchor_rate = statistics.median(anchor.levels[clients].rates)
        print(f"{'bare loop (limit)':<20} {clients:>7} {rate:>7.1f} {rate / anchor_rate:>5.2f}x")
    print(
        "bare loop: keel's engine decoding one greedy token for each client's prompt per "
        "step, alone, before the servers started (its ratio is to the median, not paired)"
    )
    if TWIN != "0":
        print_twin(by_name["keel serve"], by_name[TWIN_NAME], anchor)
    if SAVE:
        save_rates(runners, SAVE)
    print()
    print("CPU a waiting server used while another was measured (most of any window):")
    for runner in runners:
        print(f"{runner.name:<20} {runner.idle_cpu:>7.1%} of a core")
    print()
    print(f"determinism: {LEVELS[-1]}-client responses identical to the request sent alone")
    for runner in runners:
        print(f"{runner.name:<20} {runner.determinism:>7.0%}")


if __name__ == "__main__":
    main_or_runner(main, one_shots={"--limits": measure_limits})
