import math

import pytest

import keel
from keel.errors import InvalidParameterError


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "42", None])
def test_bad_seed_is_a_value_error(seed):
    with pytest.raises(ValueError, match="seed"):
        keel.generate("hi", seed=seed)


@pytest.mark.parametrize("temperature", [-0.1, math.nan, math.inf, "hot", 1000.0, 5e-324, 1e-9])
def test_bad_temperature(temperature):
    with pytest.raises(InvalidParameterError, match="temperature"):
        keel.generate("hi", temperature=temperature)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_new_tokens", 0),
        ("max_new_tokens", 2.5),
        ("top_k", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.0),
        ("stop", [""]),
        ("stop", [3]),
        ("eos_string", ""),
        ("top_logprobs", 99),
    ],
)
def test_bad_sampling_parameters(name, value):
    with pytest.raises(InvalidParameterError, match=name.split("_")[0]):
        keel.generate("hi", **{name: value})


def test_prompt_must_be_text():
    with pytest.raises(InvalidParameterError, match="prompt"):
        keel.generate(b"bytes")


def test_errors_are_raised_at_call_time_for_streams():
    with pytest.raises(InvalidParameterError):
        keel.generate_iter("hi", seed=-5)
    with pytest.raises(InvalidParameterError):
        keel.stream_generate("hi", temperature=-1)


def test_unsafe_mode_is_a_bool_and_a_no_op_for_local_models():
    with pytest.raises(InvalidParameterError, match="unsafe_mode"):
        keel.generate("hi", unsafe_mode="yes")
