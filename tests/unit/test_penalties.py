"""Repetition controls on plain arrays: pure functions of the generated tokens."""

import math

import numpy as np
import pytest

from keel.params import JSON_REPETITION_PENALTY, make_params
from keel.penalties import Penalties
from keel.sampling import TokenLogprob


def _after(tokens, logits, **settings):
    penalties = Penalties(make_params("x", **settings))
    for token in tokens:
        penalties.accept(token)
    return penalties.apply(np.asarray(logits, dtype=np.float32))


def test_off_by_default_and_the_input_is_never_changed():
    assert not Penalties(make_params("x")).active
    logits = np.array([1.0, -1.0, 2.0], dtype=np.float32)
    out = _after([0, 2], logits, presence_penalty=0.5)
    assert logits.tolist() == [1.0, -1.0, 2.0] and out is not logits


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_in_the_window():
    out = _after([0, 1, 3], [2.0, -2.0, 2.0, 4.0], repetition_penalty=2.0)
    assert out.tolist() == [1.0, -4.0, 2.0, 2.0]
    # only the last repetition_context_size tokens count
    out = _after(
        [0, 1, 3], [2.0, -2.0, 2.0, 4.0], repetition_penalty=2.0, repetition_context_size=1
    )
    assert out.tolist() == [2.0, -2.0, 2.0, 2.0]


def test_presence_once_and_frequency_per_occurrence():
    out = _after([1, 1, 1, 2], [0.0, 0.0, 0.0, 0.0], presence_penalty=0.5, frequency_penalty=0.25)
    assert out.tolist() == [0.0, -1.25, -0.75, 0.0]


def test_no_repeat_ngram_bans_the_token_that_would_repeat_an_ngram():
    logits = [0.0] * 6
    out = _after([1, 2, 3, 1], logits, no_repeat_ngram_size=2)  # "1 2" seen: 2 is banned
    assert np.isneginf(out[2]) and np.isfinite(out[[0, 1, 3, 4, 5]]).all()
    out = _after([1, 2, 3], logits, no_repeat_ngram_size=1)  # unigrams: no token twice
    assert np.isneginf(out[[1, 2, 3]]).all() and np.isfinite(out[[0, 4, 5]]).all()
    assert np.isfinite(_after([1], logits, no_repeat_ngram_size=3)).all()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("repetition_penalty", 0.0),
        ("repetition_penalty", 11.0),
        ("repetition_penalty", math.nan),
        ("repetition_context_size", 0),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("frequency_penalty", "1"),
        ("no_repeat_ngram_size", -1),
        ("no_repeat_ngram_size", 1.5),
    ],
)
def test_out_of_range_values_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        make_params("x", **{name: value})


def test_confidence_is_the_probability_of_the_chosen_token():
    entry = TokenLogprob(5, "a", -0.5, ())
    assert entry.confidence == math.exp(-0.5) == entry.to_dict()["confidence"]
    assert TokenLogprob.from_dict(entry.to_dict()) == entry


def test_a_json_schema_turns_a_mild_repetition_penalty_on_by_default():
    assert make_params("x").repetition_penalty == 1.0
    assert make_params("x", json_output=True).repetition_penalty == JSON_REPETITION_PENALTY
    assert make_params("x", json_output=True, repetition_penalty=1.0).repetition_penalty == 1.0
