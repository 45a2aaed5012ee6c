"""The persistent result cache: exact hits, many processes, crashes, eviction."""

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import keel
from keel.cache import FILENAME, Record, ResultCache, configure_cache, result_cache

PROMPT = "Write one sentence about the sea."


@pytest.fixture
def cache_dir(tmp_path):
    configure_cache(enabled=True, directory=tmp_path)
    yield tmp_path
    configure_cache(reset=True)


def _entries(directory) -> int:
    with sqlite3.connect(directory / FILENAME) as db:
        return db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]


def test_hit_equals_miss_for_text_pieces_and_logprobs(cache_dir, model_name):
    kwargs = dict(model=model_name, max_new_tokens=16, temperature=0.7, seed=3)
    miss_events = list(keel.stream_generate(PROMPT, include_logprobs=True, **kwargs))
    hit_events = list(keel.stream_generate(PROMPT, include_logprobs=True, **kwargs))
    assert not any(e.cached for e in miss_events) and all(e.cached for e in hit_events)
    for miss, hit in zip(miss_events, hit_events, strict=True):
        assert (hit.text, hit.token, hit.logprobs) == (miss.text, miss.token, miss.logprobs)
        assert hit.finish_reason == miss.finish_reason
    assert hit_events[-1].fingerprint == miss_events[-1].fingerprint
    text = "".join(e.text for e in miss_events)
    assert keel.generate(PROMPT, **kwargs) != "" and keel.generate(PROMPT, **kwargs) == text
    assert list(keel.generate_iter(PROMPT, **kwargs)) == [e.text for e in miss_events if e.text]
    pairs = list(keel.generate_iter(PROMPT, include_logprobs=True, **kwargs))
    with_lp = keel.generate(PROMPT, return_logprobs=True, **kwargs)
    assert with_lp == (text, {"content": [entry for _, entry in pairs]})
    assert with_lp == keel.generate(PROMPT, return_logprobs=True, **kwargs)


def test_everything_that_decides_the_output_is_in_the_key(cache_dir):
    base = dict(max_new_tokens=8, temperature=0.5, seed=1)
    keel.generate(PROMPT, **base)
    variants = [
        dict(base, seed=2),
        dict(base, max_new_tokens=9),
        dict(base, model="gemma3-270m"),
        dict(base, temperature=0.6),
        dict(base, top_k=5),
        dict(base, stop=["."]),
        dict(base, raw=True),
        dict(base, choices=["yes", "no"]),
    ]
    for variant in variants:
        keel.generate(PROMPT, **variant)
    keel.generate(PROMPT + " ", **base)
    assert _entries(cache_dir) == len(variants) + 2
    keel.generate(PROMPT, **base)  # and the original is a hit, not a new entry
    assert _entries(cache_dir) == len(variants) + 2


def test_disabled_cache_touches_no_file(tmp_path, monkeypatch):
    configure_cache(reset=True)
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("KEEL_CACHE", "0")
    keel.generate(PROMPT, max_new_tokens=4)
    assert not (tmp_path / FILENAME).exists()
    monkeypatch.setenv("KEEL_CACHE", "1")
    keel.generate(PROMPT, max_new_tokens=4, cache=False)
    list(keel.stream_generate(PROMPT, max_new_tokens=4, cache=False))
    assert not (tmp_path / FILENAME).exists()


def test_failed_and_stand_in_results_are_not_cached(cache_dir, monkeypatch, tmp_path):
    with pytest.raises(keel.StructuredOutputError):
        keel.generate("A point.", schema={"type": "array"}, max_new_tokens=2)
    monkeypatch.setenv("KEEL_ALLOW_FALLBACK", "1")
    keel.generate("hi", model=str(tmp_path / "absent.gguf"))
    stored = _entries(cache_dir) if (cache_dir / FILENAME).exists() else 0
    assert stored == 0


def test_hit_from_a_fresh_process_loads_no_weights(cache_dir):
    expected = keel.generate(PROMPT, max_new_tokens=12, seed=5, temperature=0.7)
    result_cache().flush()
    code = (
        "import json, sys, keel; from keel.loaded import any_loaded; "
        "from keel.cache import configure_cache;"
        "configure_cache(enabled=True, directory=sys.argv[1]);"
        "text = keel.generate(sys.argv[2], max_new_tokens=12, seed=5, temperature=0.7);"
        "print(json.dumps([text, any_loaded()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(cache_dir), PROMPT],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    assert json.loads(out.stdout) == [expected, False]


def _record(index: int) -> Record:
    return Record(
        pieces=(f"text {index}",),
        tokens=(index,),
        logprobs=None,
        finish_reason="length",
        stop_string=None,
        prompt_tokens=1,
        prompt_truncated=False,
        fingerprint={"i": index},
    )


def _writer(path: str, offset: int, count: int) -> None:
    from keel.cache import CacheConfig

    cache = ResultCache(Path(path), CacheConfig())
    for index in range(offset, offset + count):
        cache.put(f"key-{index}", _record(index))
        other = index - offset
        cache.get(f"key-{other}")  # read while the other process writes
    cache.close()


def test_two_processes_write_and_read_concurrently(tmp_path):
    path = str(tmp_path / FILENAME)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, n * 1000, 150)) for n in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    cache = ResultCache(tmp_path / FILENAME, keel.cache.CacheConfig())
    for index in [*range(150), *range(1000, 1150)]:
        assert cache.get(f"key-{index}").text == f"text {index}"
    assert cache.stats()["entries"] == 300


KILL_LOOP = """
import sys, pathlib
from keel.cache import CacheConfig, ResultCache
from keel.cache import Record
cache = ResultCache(pathlib.Path(sys.argv[1]), CacheConfig())
i = 0
print("ready", flush=True)
while True:
    record = Record(("x" * 5000,), (i,), None, "length", None, 1, False, {"i": i})
    cache.put(f"key-{i}", record)
    i += 1
"""


def test_sigkill_during_writes_leaves_a_readable_cache(tmp_path):
    path = tmp_path / FILENAME
    proc = subprocess.Popen([sys.executable, "-c", KILL_LOOP, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    cache = ResultCache(path, keel.cache.CacheConfig())
    count = cache.stats()["entries"]
    assert count > 10
    assert cache.get("key-0").text == "x" * 5000
    cache.put("after", _record(1))
    assert cache.get("after").text == "text 1"


def test_corrupt_cache_is_moved_aside_and_generation_goes_on(cache_dir):
    (cache_dir / FILENAME).write_bytes(b"this is not a database" * 100)
    with pytest.warns(keel.KeelWarning, match="moved it aside"):
        text = keel.generate(PROMPT, max_new_tokens=6)
    assert text == keel.generate(PROMPT, max_new_tokens=6, cache=False)
    assert list(cache_dir.glob(f"{FILENAME}.corrupt-*"))
    assert _entries(cache_dir) == 1


def test_eviction_keeps_the_bound_and_prefers_frequent_entries(tmp_path):
    cache = ResultCache(tmp_path / FILENAME, keel.cache.CacheConfig(max_bytes=40_000))
    for index in range(20):
        cache.put(f"key-{index}", _record(index))
    for _ in range(5):
        for index in (3, 7):
            cache.get(f"key-{index}")
    cache.flush()
    big = Record(("y" * 2000,), (0,), None, "length", None, 1, False, {})
    for index in range(100, 130):
        cache.put(f"key-{index}", big)
    stats = cache.stats()
    assert stats["bytes"] <= 40_000
    fresh = ResultCache(tmp_path / FILENAME, keel.cache.CacheConfig(max_bytes=40_000))
    assert fresh.get("key-3") is not None and fresh.get("key-7") is not None
    assert fresh.get("key-4") is None  # never used again: evicted first
    before = fresh.stats()["entries"]
    assert fresh.prune(0) == before
    assert fresh.stats()["entries"] == 0


def test_cache_cli(cache_dir, tmp_path):
    env = {**os.environ, "KEEL_CACHE": "1", "KEEL_CACHE_DIR": str(tmp_path / "cli")}
    keel_bin = str(Path(sys.executable).with_name("keel"))

    def run(*args):
        return subprocess.run([keel_bin, *args], capture_output=True, text=True, env=env)

    assert run("generate", "Hi", "--max-new-tokens", "4").returncode == 0
    assert run("generate", "Hi", "--max-new-tokens", "4").returncode == 0
    assert run("cache", "path").stdout.strip() == str(tmp_path / "cli" / FILENAME)
    stats = run("cache", "stats").stdout
    assert "entries   1" in stats and "hit rate  50.0%" in stats
    assert "removed" in run("cache", "prune", "--max-mb", "0").stdout
    assert run("cache", "clear").stdout.strip() == "cache cleared"
    assert "entries   0" in run("cache", "stats").stdout
    env["KEEL_CACHE"] = "0"
    off = run("cache", "stats")
    assert off.returncode != 0 and "disabled" in off.stderr


def test_repeated_calls_with_list_arguments_use_the_fast_path(cache_dir):
    kwargs = dict(max_new_tokens=6, stop=["zzz"], choices=None)
    first = keel.generate(PROMPT, **kwargs)
    cache = result_cache()
    hits_before = cache._hits
    assert keel.generate(PROMPT, **kwargs) == first
    assert cache._hits == hits_before + 1
    assert len(keel.api._calls)  # the call was remembered by its arguments (lists made hashable)


def test_fast_path_notices_a_model_file_replaced_in_place(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_SLOTS", "1")  # small engines for the copies; not a numeric setting
    from keel.models import resolve_model

    path = tmp_path / "model.gguf"
    expected = {}
    for name in ("smollm2-135m", "gemma3-270m"):
        expected[name] = keel.generate(PROMPT, model=name, max_new_tokens=6, raw=True)
    path.write_bytes(resolve_model("smollm2-135m").path.read_bytes())
    assert (
        keel.generate(PROMPT, model=str(path), max_new_tokens=6, raw=True)
        == expected["smollm2-135m"]
    )
    replacement = tmp_path / "replacement.gguf"
    replacement.write_bytes(resolve_model("gemma3-270m").path.read_bytes())
    os.replace(replacement, path)  # same path, another model
    assert (
        keel.generate(PROMPT, model=str(path), max_new_tokens=6, raw=True)
        == expected["gemma3-270m"]
    )
