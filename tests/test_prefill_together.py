"""Prompts prefilled together in one llama_decode must be invisible: each gives exactly
what it gives prefilled alone, and a model whose kernels cannot promise that never does
it."""

import numpy as np
import pytest

import keel
from keel.engine.context import CHUNK
from keel.engine.slots import PAD_ROWS, _runs
from keel.loaded import load_location
from keel.models import resolve_model

TOPICS = ["a fox", "the moon", "a lighthouse", "a train", "a garden", "a storm", "a city"]


def test_the_bundled_models_verdicts():
    """SmolLM2's kernels compute each row alike beside any other rows; Gemma-3's repacked
    Q4_K kernels work on blocks of four rows (this build), so it prefills alone."""
    assert load_location(resolve_model("smollm2-135m")).info()["prefill_together"] is True
    assert load_location(resolve_model("gemma3-270m")).info()["prefill_together"] is False


def test_one_slot_never_prefills_together(monkeypatch):
    monkeypatch.setenv("KEEL_SLOTS", "1")
    assert load_location(resolve_model("smollm2-135m")).engine.slots.together is False


@pytest.mark.parametrize(
    ("needed", "most", "runs"),
    [
        ({0: 5, 1: 5, 2: 5}, {0: 5, 1: 5, 2: 5}, [([0, 1, 2], 5)]),
        ({0: 5, 1: 5, 3: 5, 4: 5}, {0: 5, 1: 5, 3: 5, 4: 5}, [([0, 1], 5), ([3, 4], 5)]),
        ({0: 3, 1: 5, 2: 4}, {0: 20, 1: 20, 2: 20}, [([0, 1, 2], 5)]),  # the shorter start earlier
        ({0: 3, 1: 5}, {0: 3, 1: 5}, []),  # a cold prompt cannot start earlier
        ({0: 2, 1: 2 + PAD_ROWS + 1}, {0: 99, 1: 99}, []),  # too much padding for one pass
        ({0: 1, 1: 1}, {0: 1, 1: 1}, []),  # one token each is a decode step, not a prompt
        ({0: 300, 1: 300}, {0: 300, 1: 300}, []),  # over one chunk's rows
    ],
)
def test_runs_are_consecutive_slots_of_one_length(needed, most, runs):
    assert _runs(needed, most) == runs
    assert all(len(run) * length <= CHUNK for run, length in runs)


def _tokens(lane, text):
    return lane.vocab.prompt_tokens(text, raw=True)


def test_prompts_prefilled_together_equal_alone():
    """Tails of different lengths after earlier prompts, decoded together from one length
    back: each slot's logits after its prompt, and after a greedy step, are those of the
    same prompt prefilled alone."""
    lane = load_location(resolve_model("smollm2-135m")).engine.another_lane()
    earlier = {
        slot: _tokens(lane, f"Here is a short story about {TOPICS[slot]} (#7):")
        for slot in range(4)
    }
    prompts = {
        slot: _tokens(lane, f"Here is a short story about {TOPICS[slot]} (#{10**slot}):")
        for slot in range(4)
    }

    def after(slot):
        rows = [lane.slots.prompt_logits(slot).copy()]
        lane.step(int(np.argmax(rows[0])), len(prompts[slot]), slot)
        return [*rows, lane.logits().copy()]

    alone = {}
    for slot in prompts:
        lane.slots.clear(slot)
        lane.slots.prefill(earlier[slot], slot)
        lane.slots.prefill(prompts[slot], slot)
        alone[slot] = after(slot)
    for slot in prompts:
        lane.slots.clear(slot)
        lane.slots.prefill(earlier[slot], slot)
    reused = lane.slots.prefill_together(prompts)
    assert set(reused) == set(prompts)
    assert len({len(prompts[slot]) - first for slot, first in reused.items()}) == 1
    for slot in prompts:
        assert lane.slots.prefill(prompts[slot], slot) == reused[slot]  # taken up, not again
        together = after(slot)
        assert all(np.array_equal(a, b) for a, b in zip(alone[slot], together, strict=True))


def test_a_failed_joint_decode_leaves_the_slots_empty_and_usable():
    lane = load_location(resolve_model("smollm2-135m")).engine.another_lane()
    good = _tokens(lane, "Once upon a time there")
    bad = [*good[:-1], lane.n_vocab + 5]  # not a token: llama_decode refuses the batch
    assert lane.slots.prefill_together({0: good, 1: bad}) == {}
    assert lane._llama.next_position(0) == 0 and lane._llama.next_position(1) == 0
    lane.slots.prefill(good, 0)
    alone = lane.slots.prompt_logits(0).copy()
    lane.slots.clear(0)
    assert lane.slots.prefill_together({0: good, 1: [*good[:-1], good[0]]}).keys() == {0, 1}
    assert np.array_equal(lane.slots.prompt_logits(0), alone)


def test_requests_that_arrive_together_are_prefilled_together_and_equal_alone():
    """Seven requests queued while one runs are admitted in one round and prefilled in one
    llama_decode; each gives the text it gives alone, with true prompt statistics."""
    loaded = load_location(resolve_model("smollm2-135m"))
    worker = loaded.lanes[0].worker
    options = [dict(max_new_tokens=12, seed=i, temperature=0.7) for i in range(7)]
    prompts = [f"Story {100 + i}: {TOPICS[i]}" for i in range(7)]
    alone = [keel.generate(p, raw=True, **o) for p, o in zip(prompts, options, strict=True)]
    together_before = worker.prompts_together
    with keel.start_generation("The keeper", raw=True, max_new_tokens=200) as runner:
        stream = iter(runner)
        next(stream)  # it runs, so the others queue until the worker's next round
        handles = [
            keel.start_generation(p, raw=True, **o) for p, o in zip(prompts, options, strict=True)
        ]
        streams = [list(handle) for handle in handles]
    assert ["".join(event.text for event in events) for events in streams] == alone
    assert worker.prompts_together - together_before >= 2
    for events in streams:  # timed from the shared decode, not from its own nothing
        assert 0 < events[-1].prompt_tps < 1e6
