"""Prefix (KV) reuse must be invisible: a warm prefill equals a cold one, bit for bit."""

import pytest

import keel
from keel.loaded import load_location
from keel.models import resolve_model
from keel.scheduler import best_slot

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


@pytest.fixture
def whole_chunks_only(model_name):
    """The engine with the any-position rule off, as for a model that failed its proof."""
    engine = load_location(resolve_model(model_name)).engine
    proven = engine.slots.reuse.any_position
    engine.slots.reuse.any_position = False
    yield engine
    engine.slots.reuse.any_position = proven


@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_warm_prefill_equals_cold(model_name, whole_chunks_only, chunks):
    engine = whole_chunks_only
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


def test_the_bundled_models_verdicts():
    """SmolLM2 computes a row the same beside any rows of its sequence; Gemma-3's repacked
    Q4_K kernels do not (this build), so it keeps to whole chunks."""
    smollm = load_location(resolve_model("smollm2-135m"))
    gemma = load_location(resolve_model("gemma3-270m"))
    assert smollm.info()["prefix_reuse"] == "any position"
    assert gemma.info()["prefix_reuse"].startswith("whole chunks")


@pytest.mark.parametrize(
    ("shared", "tails"),
    [
        ("Here is a short story about", (" a fox (#1):", " a lighthouse (#2):")),
        (SENTENCE * 70, (" Who lit the lamp?", " What did the keeper see?")),  # > one chunk
        ("A", ("B", "C")),  # nothing but the first token in common
    ],
)
def test_a_shared_prefix_goes_on_exactly(model_name, shared, tails):
    engine = load_location(resolve_model(model_name)).engine
    first, second = (shared + tail for tail in tails)
    engine.slots.reset()
    _, cold = _run(second, model_name)
    engine.slots.reset()
    _run(first, model_name)
    events, warm = _run(second, model_name)
    assert warm == cold
    reused = events[-1].prompt_reused
    if engine.slots.reuse.any_position:
        assert reused > 0 or len(shared) == 1
    else:
        assert reused % 512 == 0


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


def test_jobs_that_fill_every_slot_each_take_the_slot_holding_their_prefix():
    """Placed together so that every slot is busy, the running slots are one decode group
    whichever each job takes, so each goes where its prompt's prefix is; otherwise staying
    beside the running slots comes first."""
    engine = load_location(resolve_model("smollm2-135m")).engine
    topics = ["a fox", "the moon", "a train", "a garden", "a storm", "a city", "a ship", "a bee"]
    assert engine.slots.count == len(topics)

    def tokens(topic: str, index: int) -> list[int]:
        return engine.vocab.prompt_tokens(
            f"Here is a short story about {topic} (#{index}):", raw=True
        )

    engine.slots.reset()
    for slot, topic in enumerate(topics):
        engine.slots.prefill(tokens(topic, 1), slot)
    again = [tokens(topic, 2) for topic in topics]
    sizes = engine.batch_sizes
    busy: set[int] = set()
    for slot in reversed(range(len(topics))):  # arriving in an order unlike the slots'
        assert best_slot(again[slot], busy, engine.slots, sizes, placing=slot + 1) == slot
        topic_prefix = engine.vocab.prompt_tokens(
            f"Here is a short story about {topics[slot]}", raw=True
        )
        assert engine.slots.reusable_tokens(again[slot], slot) >= len(topic_prefix)
        busy.add(slot)
    assert best_slot(again[6], {0, 1, 2, 3}, engine.slots, sizes, placing=1) == 4
    engine.slots.reset()
