"""Determinism as equivalences, on the real bundled models."""

import pytest
from fresh import generate_in_fresh_process

import keel

PROMPT = "Write one sentence about lighthouses."


def test_repeat_calls_agree(model_name):
    first = keel.generate(PROMPT, model=model_name, max_new_tokens=24)
    assert first
    assert keel.generate(PROMPT, model=model_name, max_new_tokens=24) == first


def test_generate_equals_iter_equals_stream(model_name):
    for temperature in (0.0, 0.8):
        kwargs = dict(model=model_name, max_new_tokens=32, temperature=temperature, seed=5)
        text = keel.generate(PROMPT, **kwargs)
        assert "".join(keel.generate_iter(PROMPT, **kwargs)) == text
        events = list(keel.stream_generate(PROMPT, **kwargs))
        assert "".join(event.text for event in events) == text
        assert events[-1].finish_reason in {"stop", "length"}
        assert all(event.finish_reason is None for event in events[:-1])


def test_fresh_process_agrees(model_name):
    kwargs = dict(model=model_name, max_new_tokens=24, temperature=0.7, seed=11)
    here = keel.generate(PROMPT, **kwargs)
    assert generate_in_fresh_process(PROMPT, kwargs) == here


def test_thread_count_does_not_change_output(model_name, monkeypatch):
    kwargs = dict(model=model_name, max_new_tokens=32, temperature=0.6, seed=3)
    monkeypatch.setenv("KEEL_THREADS", "1")
    one = [e.token for e in keel.stream_generate(PROMPT, **kwargs)]
    monkeypatch.setenv("KEEL_THREADS", "2")
    two = [e.token for e in keel.stream_generate(PROMPT, **kwargs)]
    assert one == two


def test_a_long_context_is_the_same_alone_batched_and_at_any_thread_count(model_name, monkeypatch):
    """Past 512 KV cells llama.cpp's flash attention would split a lone query across
    threads; keel's K/V types keep it on the one-row path, so nothing changes."""
    from concurrent.futures import ThreadPoolExecutor

    from keel.loaded import load_location
    from keel.models import resolve_model

    prompt = "The keeper climbed the stairs and lit the lamp. " * 60
    kwargs = dict(model=model_name, max_new_tokens=12, temperature=0.6, seed=3, raw=True)
    neighbour = dict(kwargs, seed=4)
    monkeypatch.setenv("KEEL_THREADS", "1")
    engine = load_location(resolve_model(model_name)).engine
    assert len(engine.vocab.prompt_tokens(prompt, raw=True)) > 520
    one = keel.generate(prompt, **kwargs)
    monkeypatch.setenv("KEEL_THREADS", "2")
    two = keel.generate(prompt, **kwargs)
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(keel.generate, prompt + " And then", **neighbour)
        batched = pool.submit(keel.generate, prompt, **kwargs)
        busy.result()
    assert one == two == batched.result()


def test_same_seed_same_text_different_seeds_differ(model_name):
    kwargs = dict(model=model_name, max_new_tokens=24, temperature=1.0)
    texts = {seed: keel.generate(PROMPT, seed=seed, **kwargs) for seed in (1, 2, 3, 4, 5)}
    assert keel.generate(PROMPT, seed=3, **kwargs) == texts[3]
    assert len(set(texts.values())) >= 4


def test_temperature_zero_equals_top_k_one(model_name):
    greedy = keel.generate(PROMPT, model=model_name, max_new_tokens=24)
    top1 = keel.generate(
        PROMPT, model=model_name, max_new_tokens=24, temperature=1.3, top_k=1, seed=9
    )
    assert top1 == greedy


def test_seed_is_ignored_at_temperature_zero(model_name):
    with pytest.warns(keel.KeelWarning, match="no effect at temperature=0"):
        a = keel.generate(PROMPT, model=model_name, max_new_tokens=16, seed=1)
        assert keel.generate(PROMPT, model=model_name, max_new_tokens=16, seed=2) == a


def test_concurrent_threads_match_serial():
    from concurrent.futures import ThreadPoolExecutor

    jobs = [dict(seed=s, temperature=t) for s in (1, 2) for t in (0.0, 0.9)] * 2
    serial = [keel.generate(PROMPT, max_new_tokens=16, **job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda job: keel.generate(PROMPT, max_new_tokens=16, **job), jobs))
    assert parallel == serial


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_and_blank_prompts_are_deterministic(prompt, model_name):
    a = keel.generate(prompt, model=model_name, max_new_tokens=8, raw=True)
    assert keel.generate(prompt, model=model_name, max_new_tokens=8, raw=True) == a


def test_nested_generation_in_one_thread_is_served_after_the_open_one():
    stream = keel.generate_iter(PROMPT, max_new_tokens=8)
    first = next(stream)
    assert keel.generate("other", max_new_tokens=4) == keel.generate("other", max_new_tokens=4)
    assert first + "".join(stream) == keel.generate(PROMPT, max_new_tokens=8)
