"""Continuous batching must be invisible: sequences decoded together give exactly what they
give alone, and batching happens only at sizes the load-time self-check proved."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import keel
from keel.engine.batching import StepCosts
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


def test_a_filler_row_bridges_a_gap_and_leaves_its_slot_as_it_was():
    """Slots 0 and 2 decode as one micro-batch with a throwaway row in slot 1 between them:
    their logits are those of decoding alone, and slot 1 holds what it held before."""
    lane = load_location(resolve_model("smollm2-135m")).engine.another_lane()
    prompts = ["Once upon a time", "The lighthouse keeper", "Name three colours:"]
    tokens = [lane.vocab.prompt_tokens(prompt, raw=True) for prompt in prompts]
    for slot, prompt in enumerate(tokens):
        lane.slots.prefill(prompt, slot)
    rows = {
        slot: (int(np.argmax(lane.slots.prompt_logits(slot))), len(tokens[slot]), slot)
        for slot in range(3)
    }
    alone = {}
    for slot in range(3):
        lane.step_batch([rows[slot]])
        alone[slot] = lane.logits().copy()
        lane.slots.rewind(slot, len(tokens[slot]))
    fillers = lane.filler_rows({0: rows[0][1], 2: rows[2][1]})
    assert fillers[1] == (0, len(tokens[1]), 1) and 0 not in fillers and 2 not in fillers
    lane.step_batch([rows[0], fillers[1], rows[2]], fillers={1})
    assert np.array_equal(lane.logits(0), alone[0])
    assert np.array_equal(lane.logits(2), alone[2])
    assert lane._llama.next_position(1) == len(tokens[1])
    lane.step_batch([rows[1]])
    assert np.array_equal(lane.logits(), alone[1])


def test_no_filler_row_reaches_past_the_kv_the_batch_attends_over_anyway():
    lane = load_location(resolve_model("smollm2-135m")).engine.another_lane()
    lane.slots.prefill(lane.vocab.prompt_tokens("Hi " * 300, raw=True), 1)  # over 256 cells
    assert 1 not in lane.filler_rows({0: 10, 2: 20})
    assert 1 in lane.filler_rows({0: 10, 2: 400})


class SteadyCosts(StepCosts):
    """Step times fixed by the test instead of measured."""

    def __init__(self, seconds: dict[int, float]) -> None:
        super().__init__()
        self._seconds = dict(seconds)

    def observe(self, rows: int, seconds: float) -> None:
        pass


def test_streams_on_either_side_of_a_cancelled_one_still_decode_together(monkeypatch):
    """With three slots, A, B and C land in slots 0, 1 and 2; once B is cancelled, A and C
    keep decoding in one call a step (a filler row in slot 1, on step times where that
    pays; whether it does here is the machine's), and give what they give alone."""
    monkeypatch.setenv("KEEL_SLOTS", "3")
    worker = load_location(resolve_model("smollm2-135m")).lanes[0].worker
    worker._step_costs = SteadyCosts({1: 0.010, 2: 0.011, 3: 0.012})  # a filler row pays
    jobs = [
        ("Once upon a time", dict(max_new_tokens=32, seed=1, temperature=0.8)),
        ("The lighthouse keeper", dict(max_new_tokens=400, temperature=0.0)),
        ("Name three colours:", dict(max_new_tokens=32, seed=2, temperature=0.5)),
    ]
    alone = [keel.generate(prompt, raw=True, **options) for prompt, options in jobs[::2]]
    handles, streams = [], []
    for prompt, options in jobs:  # one at a time, so each takes the next free slot
        handles.append(keel.start_generation(prompt, raw=True, **options))
        streams.append(iter(handles[-1]))  # kept: a dropped iterator cancels its job
        next(streams[-1])
    assert worker._active == {slot: handle._source for slot, handle in enumerate(handles)}
    handles[1].cancel()
    handles[1]._source.wait_released()
    calls, tokens = worker.decode_calls, worker.decoded_tokens
    assert [handle.result().text for handle in handles[::2]] == alone
    assert (worker.decoded_tokens - tokens) / (worker.decode_calls - calls) > 1.5


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
