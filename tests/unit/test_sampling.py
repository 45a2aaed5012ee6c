"""The sampler is a pure function; these checks run on plain arrays."""

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from keel.params import make_params
from keel.sampling import (
    candidate_ids,
    gumbel_noise,
    noise_signature,
    sample,
    token_logprob,
    top_ids,
)


def test_argmax_ties_go_to_lowest_id():
    logits = np.array([1.0, 3.0, 3.0, 2.0], dtype=np.float32)
    assert sample(logits, 0, make_params("x")) == 1


def test_top_ids_orders_by_value_then_id():
    values = np.array([5.0, 1.0, 5.0, 7.0, 5.0, 0.0])
    assert top_ids(values, 3).tolist() == [3, 0, 2]
    assert top_ids(values, 6).tolist() == [3, 0, 2, 4, 1, 5]


def test_top_k_one_equals_greedy_at_any_temperature():
    rng = np.random.default_rng(0)
    for _ in range(50):
        logits = rng.normal(size=1000).astype(np.float32)
        greedy = sample(logits, 0, make_params("x"))
        for step in range(3):
            assert sample(logits, step, make_params("x", temperature=1.5, top_k=1)) == greedy


def test_noise_depends_only_on_seed_and_step():
    a = gumbel_noise(7, 3, 100)
    assert np.array_equal(a, gumbel_noise(7, 3, 100))
    assert not np.array_equal(a, gumbel_noise(7, 4, 100))
    assert not np.array_equal(a, gumbel_noise(8, 3, 100))
    # steps are independent streams, not shifted copies of one another
    assert not np.array_equal(gumbel_noise(7, 3, 100)[4:], gumbel_noise(7, 4, 100)[:-4])


_SIGNATURE = """
from numpy.lib.introspect import opt_func_info
from keel.sampling import noise_signature
print(opt_func_info(func_name="^log$", signature="float32")["log"]["ff"]["current"])
print(noise_signature())
"""


def _signature_in_fresh_process(**env: str) -> tuple[str, str]:
    """(numpy's float32 log kernel, keel's noise signature) in a new interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _SIGNATURE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return out[0], out[1]


def test_noise_signature_tells_numpys_log_kernels_apart():
    """The fingerprint's noise signature is the same in a fresh process, and changes
    when numpy computes the noise's logarithms with another kernel (its baseline one,
    which gives other values than the AVX2 and AVX-512 ones)."""
    kernel, signature = _signature_in_fresh_process()
    assert signature == noise_signature()
    assert signature.startswith(f"numpy {np.__version__}, log ")
    if kernel.startswith("baseline"):
        pytest.skip("numpy already runs its baseline kernel here")
    # every level above numpy 2.4's x86 baseline (names the CPU lacks are ignored)
    disabled = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
    baseline, other = _signature_in_fresh_process(NPY_DISABLE_CPU_FEATURES=disabled)
    assert baseline.startswith("baseline"), baseline
    assert other != signature


def test_no_global_random_state_is_touched():
    np_state = np.random.get_state()[1].copy()
    py_state = random.getstate()
    logits = np.linspace(0, 1, 500, dtype=np.float32)
    sample(logits, 5, make_params("x", temperature=0.9, top_p=0.9, top_k=50, min_p=0.01))
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert random.getstate() == py_state


def test_masks_are_in_vocabulary_order_and_nested():
    logits = np.array([0.0, 4.0, 1.0, 4.0, 3.0, -2.0], dtype=np.float32)
    assert candidate_ids(logits, make_params("x", temperature=1.0, top_k=2)).tolist() == [1, 3]
    top_p = candidate_ids(logits, make_params("x", temperature=1.0, top_p=0.5))
    assert top_p.tolist() == [1, 3]
    min_p = candidate_ids(logits, make_params("x", temperature=1.0, min_p=0.3))
    assert min_p.tolist() == [1, 3, 4]


def test_top_p_window_and_full_sort_agree():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=0.01, size=20000).astype(np.float32)  # flat: window too small
    kept = candidate_ids(logits, make_params("x", temperature=1.0, top_p=0.9))
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    order = np.lexsort((np.arange(probs.size), -probs))
    needed = int(np.searchsorted(np.cumsum(probs[order]), 0.9) + 1)
    assert kept.tolist() == sorted(order[:needed].tolist())


def test_sampling_follows_the_distribution():
    logits = np.log(np.array([0.5, 0.3, 0.2])).astype(np.float32)
    params = make_params("x", temperature=1.0, seed=3)
    counts = np.bincount([sample(logits, step, params) for step in range(3000)], minlength=3)
    assert np.allclose(counts / 3000, [0.5, 0.3, 0.2], atol=0.04)


def test_logprobs_are_normalised():
    logits = np.array([2.0, 1.0, 0.5, -1.0], dtype=np.float32)
    entry = token_logprob(logits, 1, 3, str)
    assert all(alt.logprob <= 0 for alt in entry.top_logprobs)
    assert [alt.token_id for alt in entry.top_logprobs] == [0, 1, 2]
    assert entry.logprob == entry.top_logprobs[1].logprob
    total = sum(np.exp(token_logprob(logits, i, 0, str).logprob) for i in range(4))
    assert abs(total - 1.0) < 1e-9
