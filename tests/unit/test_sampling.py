"""The sampler is a pure function; these checks run on plain arrays."""

import math
import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest

from keel._philox import NOISE_CEILING, best_score, contenders, cut, uniform_at
from keel.params import GenerationParams, make_params
from keel.sampling import (
    _double_log_in_place,
    candidate_ids,
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


def _noise_at(seed: int, step: int, ids: np.ndarray) -> np.ndarray:
    """The noise the sampler draws at `ids`: its scan keeps every id for a cut that is not
    finite, as after an infinite top."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    index, uniform = np.empty(ids.shape[0], dtype=np.int64), np.empty(ids.shape[0], np.float32)
    count, _ = contenders(
        step, seed, np.zeros(ids.shape[0], np.float32), ids, math.nan, index, uniform
    )
    assert count == ids.shape[0]
    with np.errstate(divide="ignore"):
        _double_log_in_place(uniform)
    return -uniform


def _noise(seed: int, step: int, size: int) -> np.ndarray:
    return _noise_at(seed, step, np.arange(size))


def test_noise_depends_only_on_seed_and_step():
    a = _noise(7, 3, 100)
    assert np.array_equal(a, _noise(7, 3, 100))
    assert not np.array_equal(a, _noise(7, 4, 100))
    assert not np.array_equal(a, _noise(8, 3, 100))
    # steps are independent streams, not shifted copies of one another
    assert not np.array_equal(_noise(7, 3, 100)[4:], _noise(7, 4, 100)[:-4])


def _stream_noise(seed: int, step: int, size: int) -> np.ndarray:
    """What the noise is defined as: numpy's float32 Philox stream keyed by (seed, step),
    through -log(-log(u)), over the whole vocabulary."""
    bits = np.random.Philox(key=(seed << 64) | step)
    uniform = np.random.Generator(bits).random(size, dtype=np.float32)
    with np.errstate(divide="ignore"):
        return -np.log(-np.log(uniform))


@pytest.mark.parametrize(
    ("seed", "step"), [(0, 0), (7, 3), (2**32 - 1, 1), (123_456_789, 4_095), (1, 2**40)]
)
def test_noise_at_chosen_ids_is_numpys_stream_there(seed: int, step: int):
    """keel/_philox.c computes the stream only where asked; at every position of a 262k
    vocabulary (Gemma's), in any order and with repeats, it gives what numpy's whole
    stream gives there."""
    size = 262_144
    whole = _stream_noise(seed, step, size)
    assert np.array_equal(_noise(seed, step, size), whole)
    ids = np.random.default_rng(seed ^ step).integers(0, size, 5_000)
    assert np.array_equal(_noise_at(seed, step, ids), whole[ids])


def test_philox_refuses_buffers_it_cannot_fill():
    """The sampler's C scans (keel/_philox.c): wrong dtypes or lengths, a read-only output,
    an index outside the values or a key out of range are typed errors, not a write past
    the end or a silent partial result."""
    values = np.array([0.5, 2.0, -1.0, 2.0], dtype=np.float32)
    index, out = np.empty(4, dtype=np.int64), np.empty(4, dtype=np.float32)
    assert contenders(3, 7, values, None, 0.0, index, out) == (3, False)
    assert index[:3].tolist() == [0, 1, 3]
    assert out[:3].tolist() == [uniform_at(3, 7, i) for i in (0, 1, 3)]
    ids = np.array([10, 11, 12, 13])
    assert contenders(3, 7, values, ids, 1.0, index, out) == (2, False)
    assert out[:2].tolist() == [uniform_at(3, 7, 11), uniform_at(3, 7, 13)]
    assert best_score(values, np.array([1, 3]), 1.0, np.zeros(2, dtype=np.float32)) == 1
    for bad in [
        (values.astype(np.float64), None, index, out),
        (values, ids[:3], index, out),
        (values, np.arange(8, dtype=np.int32), index, out),  # the same bytes, not int64
        (values, ids.astype(np.int32), index, out),
        (values, None, index[:3], out),
        (values, None, index, out[:3]),
        (values, None, index, np.empty(4, dtype=np.float64)),
        (values, None, index, np.empty(4, dtype=np.int32)),
    ]:
        with pytest.raises(ValueError, match="contenders needs"):
            contenders(3, 7, bad[0], bad[1], 0.0, bad[2], bad[3])
    with pytest.raises(ValueError, match="not C-contiguous"):
        contenders(3, 7, values, None, 0.0, index, np.empty(8, dtype=np.float32)[::2])
    with pytest.raises(ValueError, match="negative"):
        contenders(3, 7, values, np.array([0, -1, 2, 3]), 0.0, index, out)
    with pytest.raises(ValueError, match="negative"):
        uniform_at(3, 7, -1)
    with pytest.raises(TypeError, match="bytes-like"):
        contenders(3, 7, values, [0, 1, 2, 3], 0.0, index, out)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        contenders(3, 7, values, None, 0.0, index, out)
    for key in [(-1, 0), (0, 2**64)]:  # refused, not wrapped around
        with pytest.raises(OverflowError):
            contenders(*key, values, None, 0.0, index, np.empty(4, dtype=np.float32))
        with pytest.raises(OverflowError):
            uniform_at(*key, 0)
    for bad_values, best, position in [
        (values.astype(np.float64), 1, 1),
        (values, 4, 1),  # past the end
        (values, -1, 1),
        (values, 1, -1),
    ]:
        with pytest.raises(ValueError, match="cut needs"):
            cut(3, 7, bad_values, best, position, 0.7)
    logs = np.zeros(2, dtype=np.float32)
    for bad_index, bad_logs in [
        (np.array([1, 4]), logs),  # past the end
        (np.array([-1, 1]), logs),
        (np.array([1, 3]), logs[:1]),
        (np.array([], dtype=np.int64), logs[:0]),  # nothing to choose from
    ]:
        with pytest.raises(ValueError, match="best_score needs"):
            best_score(values, bad_index, 1.0, bad_logs)


def test_the_scan_finds_each_contender_wherever_it_lies():
    """contenders tests whole blocks of values at once before it looks at each one: a
    value at the cut in any place of a block, in the short block at the end, or beside a
    NaN is found, and the NaN is not."""
    for size in (1, 15, 16, 17, 33, 100):
        for at in range(size):
            values = np.full(size, -1.0, dtype=np.float32)
            values[at] = 2.0
            values[(at + 1) % size] = np.nan if size > 1 else 2.0
            index = np.empty(size, dtype=np.int64)
            out = np.empty(size, dtype=np.float32)
            count, _ = contenders(3, 7, values, None, 2.0, index, out)
            assert index[:count].tolist() == [at]


def test_the_cut_is_below_the_top_ids_score_by_the_ceiling():
    """cut: the top's value / T plus a bound below its noise, less the ceiling, times T;
    a NaN or infinite top gives a cut that keeps every id."""
    values = np.array([0.5, 3.0, -1.0], dtype=np.float32)
    noise = -math.log(-math.log(uniform_at(3, 7, 9)))
    least = cut(3, 7, values, 1, 9, 0.5) / 0.5
    assert 6.0 + noise - NOISE_CEILING - 2e-3 < least < 6.0 + noise - NOISE_CEILING
    for top in (np.nan, np.inf):
        values[1] = top
        assert not math.isfinite(cut(3, 7, values, 1, 9, 0.5))


def test_a_draw_of_zero_never_wins_and_warns_of_nothing():
    """A uniform of exactly 0 has noise -inf, and numpy's log(0) would warn. (step 5,
    seed 2447) draws 0 at id 3200: as the top id (its draw makes the bound -inf, so every
    id is scanned) and as one contender among others, the choice is the one the whole
    noise gives, and no warning is raised."""
    step, seed, zero_at = 5, 2447, 3200
    assert uniform_at(step, seed, zero_at) == 0.0
    params = make_params("x", temperature=0.7, seed=seed)
    for top in (zero_at, 0):
        logits = np.zeros(4096, dtype=np.float32)
        logits[zero_at], logits[0] = 3.0, 2.9 if top == zero_at else 3.1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            chosen = sample(logits, step, params)
        assert chosen == _sample_with_all_noise(logits, step, params) != zero_at


def test_no_draw_reaches_the_noise_ceiling():
    """The sampler leaves out ids whose logit + NOISE_CEILING cannot beat the best one's
    score: true only if no uniform keel can draw (k / 2^24) has noise at the ceiling, and
    if its float64 bound on the best one's noise is below what numpy's float32 gives."""
    every_uniform = np.arange(1 << 24, dtype=np.float32) * np.float32(2**-24)
    with np.errstate(divide="ignore"):
        noise = -np.log(-np.log(every_uniform))
    assert noise.max() < NOISE_CEILING
    assert noise.max() > NOISE_CEILING - 0.2  # and the ceiling leaves out all it can
    # the sampler bounds the top id's score with float64 logarithms less 1e-3: numpy's
    # float32 ones must not fall below that
    exact = -np.log(-np.log(every_uniform[1:].astype(np.float64)))
    assert np.abs(noise[1:] - exact).max() < 1e-4


def _sample_with_all_noise(logits: np.ndarray, step: int, params: GenerationParams) -> int:
    """The sampler's definition: argmax of scaled logits plus the whole vocabulary's noise
    (over the allowed ids, first index on ties)."""
    ids = candidate_ids(logits, params)
    noise = _stream_noise(params.seed, step, logits.shape[0])
    if ids is None:
        return int(np.argmax(logits / np.float32(params.temperature) + noise))
    scores = logits[ids] / np.float32(params.temperature) + noise[ids]
    return int(ids[np.argmax(scores)])


def test_sampling_only_the_ids_that_can_win_picks_what_all_the_noise_picks():
    """Leaving out the ids that cannot win changes no choice: over peaked and flat
    logits, magnitudes from 1e-30 to 1e33, ties, -inf masks, NaN, everything
    masked, the least and greatest temperatures, and the top_k / top_p / min_p paths."""
    rng = np.random.default_rng(5)
    for case in range(400):
        spread = rng.choice([rng.uniform(0.1, 8), 1e-30, 1e33])
        logits = rng.normal(0, spread, 2_000).astype(np.float32)
        if case % 3 == 0:
            logits[rng.integers(0, 2_000, 1_500)] = -np.inf
        if case % 7 == 0:
            logits = np.round(logits)
        if case % 11 == 0:
            logits[rng.integers(0, 2_000, 3)] = np.nan
        if case % 29 == 0:
            logits[:] = -np.inf
        filters = [{}, {"top_k": 40}, {"top_p": 0.9}, {"min_p": 0.05}][case % 4]
        if case % 11 == 0 or case % 29 == 0:
            filters = {}  # the filters refuse NaN and all-masked logits on their own
        params = make_params(
            "x",
            temperature=float(rng.choice([1e-4, 0.05, 0.7, 1.0, 3.0, 100.0])),
            seed=int(rng.integers(0, 2**32)),
            **filters,
        )
        step = int(rng.integers(0, 10_000))
        assert sample(logits, step, params) == _sample_with_all_noise(logits, step, params)


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
