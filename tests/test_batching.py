"""Continuous batching must be invisible: sequences decoded together give exactly what they
give alone, and batching happens only at sizes the load-time self-check proved."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import keel
from keel.engine.library import llama
from keel.errors import GenerationError
from keel.loaded import load_location
from keel.models import resolve_model

PROMPT = "Write a short story about a lighthouse."


def test_self_check_result_is_reported(model_name):
    loaded = load_location(resolve_model(model_name))
    sizes = loaded.engine.batch_sizes
    assert sizes[0] == 1 and list(sizes) == sorted(set(sizes))
    assert set(sizes) <= set(range(1, loaded.engine.slots.count + 1))


def test_batched_equals_solo_and_really_batches(model_name):
    loaded = load_location(resolve_model(model_name))
    jobs = [
        dict(seed=seed, temperature=temperature, max_new_tokens=24, model=model_name)
        for seed, temperature in ((1, 0.0), (2, 0.7), (3, 1.0), (4, 0.3))
    ] * 2
    prompts = [PROMPT, "Name three colours.", "Once upon a time", "2 + 2 ="] * 2
    solo = [keel.generate(p, **job) for p, job in zip(prompts, jobs, strict=True)]
    worker = loaded.lanes[0].worker
    calls, tokens = worker.decode_calls, worker.decoded_tokens
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p, job: keel.generate(p, **job), prompts, jobs))
    assert together == solo
    batched = (worker.decoded_tokens - tokens) / (worker.decode_calls - calls)
    if max(loaded.engine.batch_sizes) > 1:
        assert batched > 1.5  # most steps decoded several sequences at once
    assert batched <= max(loaded.engine.batch_sizes)


def test_row_views_are_llama_cpps_own_rows():
    """The worker reads a batch's logits through one view of all rows; row i must be what
    llama.cpp's own accessor gives for batch row i."""
    lane = load_location(resolve_model("smollm2-135m")).engine.another_lane()
    with pytest.raises(GenerationError, match="none has run"):
        lane.logits()
    tokens = lane.vocab.prompt_tokens("Once upon a time", raw=True)[:3]
    lane.step_batch([(token, 0, slot) for slot, token in enumerate(tokens)])
    lib, context = llama(), lane._llama
    for row in (0, 1, 2, -1):
        own = np.ctypeslib.as_array(lib.llama_get_logits_ith(context.pointer, row), (lane.n_vocab,))
        assert np.array_equal(lane.logits(row), own)
    assert not np.array_equal(lane.logits(0), lane.logits(1))


def test_one_slot_context_gives_the_same_text(monkeypatch):
    """The slot count is not in the fingerprint because it does not change results."""
    kwargs = dict(max_new_tokens=16, seed=9, temperature=0.8)
    many = keel.generate(PROMPT, **kwargs)
    monkeypatch.setenv("KEEL_SLOTS", "1")
    one = load_location(resolve_model("smollm2-135m"))
    assert one.engine.slots.count == 1 and one.engine.batch_sizes == (1,)
    assert keel.generate(PROMPT, **kwargs) == many


def test_a_long_prefill_does_not_stall_running_streams():
    """Prompts are prefilled one 512-token chunk per round, between decode steps of the
    sequences already streaming, so their longest pause is about one chunk, not the whole
    prompt."""
    engine = load_location(resolve_model("smollm2-135m")).engine
    long_prompt = "The keeper climbed the stairs and lit the lamp. " * 140
    assert len(engine.vocab.prompt_tokens(long_prompt, raw=True)) > 2 * 512
    arrivals = []
    running = keel.start_generation("Tell me a long story.", max_new_tokens=400, temperature=1)
    consumer = threading.Thread(
        target=lambda: arrivals.extend(time.perf_counter() for _ in running), daemon=True
    )
    consumer.start()
    while len(arrivals) < 3:
        time.sleep(0.01)
    submitted = time.perf_counter()
    events = list(keel.stream_generate(long_prompt, raw=True, max_new_tokens=1))
    first_token = submitted + events[-1].time_to_first_token
    running.cancel()
    consumer.join()
    during = [t for t in arrivals if submitted <= t <= first_token]
    gaps = [b - a for a, b in zip([submitted, *during], [*during, first_token], strict=True)]
    assert len(during) >= 2  # the stream went on while the long prompt was prefilled
    assert max(gaps) < 0.7 * (first_token - submitted)
