"""Prefix (KV) reuse must be invisible: a warm prefill equals a cold one, bit for bit."""

import pytest

import keel
from keel.loaded import load_location
from keel.models import resolve_model

SENTENCE = "The keeper climbed the stairs and lit the lamp before the storm. "


def _prompt(engine, chunks: int, tail: str) -> str:
    """Raw text whose tokens fill `chunks` whole 512-token chunks, then `tail`."""
    text = SENTENCE * (chunks * 512 // 10)
    while len(engine.vocab.prompt_tokens(text, raw=True)) > chunks * 512:
        text = text[: len(text) - len(SENTENCE)]
    while len(engine.vocab.prompt_tokens(text, raw=True)) < chunks * 512:
        text += "a "
    assert len(engine.vocab.prompt_tokens(text, raw=True)) >= chunks * 512
    return text + tail


def _run(prompt, model):
    events = list(
        keel.stream_generate(prompt, model=model, raw=True, max_new_tokens=4, include_logprobs=True)
    )
    return events, [(e.token, e.logprobs) for e in events]


@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_warm_prefill_equals_cold(model_name, chunks):
    engine = load_location(resolve_model(model_name)).engine
    prompt = _prompt(engine, chunks, " Question: what did the keeper see?")
    other = _prompt(engine, chunks, " Question: who built the tower?")
    engine.slots.reuse.verdict = False
    _, cold = _run(prompt, model_name)
    engine.slots.reuse.verdict = None  # back to the proven (and remembered) setting
    _run(other, model_name)  # fills the cache with the shared chunks and another tail
    events, warm = _run(prompt, model_name)
    assert engine.slots.reuse.verdict is True
    assert events[-1].prompt_reused == chunks * 512
    assert warm == cold


def test_short_new_prompts_reuse_nothing():
    events = list(keel.stream_generate("Hello, a prompt seen once", max_new_tokens=2))
    assert events[-1].prompt_reused == 0


def test_the_same_prompt_again_skips_prefill_and_gives_the_same_tokens(model_name):
    engine = load_location(resolve_model(model_name)).engine
    prompt = "The same question, asked with several seeds:"

    def run(seed):
        events = keel.stream_generate(
            prompt,
            model=model_name,
            seed=seed,
            temperature=0.9,
            max_new_tokens=12,
            include_logprobs=True,
        )
        events = list(events)
        return events[-1].prompt_reused, [(e.token, e.logprobs) for e in events]

    cold = []
    for seed in (1, 2):
        engine.slots.reset()
        cold.append(run(seed)[1])
    engine.slots.reset()
    reused, first = run(1)
    assert reused == 0 and first == cold[0]
    reused, again = run(2)
    assert reused == len(engine.vocab.prompt_tokens(prompt, raw=False)) and again == cold[1]
