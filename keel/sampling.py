"""keel's own sampler: a pure function of (logits, seed, step, parameters).

llama.cpp's sampler chain keeps hidden state and its RNG advances with every call, so a
token's randomness would depend on how the request was scheduled. Here the noise for
step n is drawn from a Philox stream keyed by (seed, n) alone, and all masks are computed
in vocabulary order, so stream, batch and resumed runs pick the same tokens.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from ._philox import best_score, contenders, cut
from .params import GenerationParams

# Top-p first looks at this many best tokens; only if their mass is short of top_p does it
# sort the whole vocabulary. Both paths keep the same set, the first is just faster.
_TOP_P_WINDOW = 4096


def top_ids(values: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest values, ordered by value descending, ties by lowest id.

    Linear time via a partition; the ordering rule makes ties independent of numpy's
    partition algorithm.
    """
    n = values.shape[0]
    if k >= n:
        return np.lexsort((np.arange(n), -values))
    threshold = np.partition(values, n - k)[n - k]
    above = np.flatnonzero(values > threshold)
    at_threshold = np.flatnonzero(values == threshold)[: k - above.shape[0]]
    chosen = np.concatenate((above, at_threshold))
    return chosen[np.lexsort((chosen, -values[chosen]))]


def _double_log_in_place(uniform: np.ndarray) -> None:
    """log(-log(u)): the Gumbel(0, 1) noise negated, with numpy's logarithms, the
    fingerprinted part of the noise (noise_signature). log(0) warns unless the caller
    silences it.

    A step's uniforms are numpy's Philox stream (`Generator(Philox(key)).random(size,
    dtype=float32)`) keyed by (seed, step), drawn only where asked (keel/_philox.c): every
    step has its own independent stream, where keying by counter would make step n+1 a
    shifted copy of step n; float32 halves the cost of the logarithms and is just as
    reproducible."""
    np.log(uniform, out=uniform)
    np.negative(uniform, out=uniform)
    np.log(uniform, out=uniform)


@cache
def noise_signature() -> str:
    """Which implementation computes the noise, for the fingerprint.

    Its logarithms are numpy's float32 SIMD kernels. numpy 2.4.6's AVX2 and AVX-512
    kernels agree on every uniform keel can draw (all 2^24 - 1 were compared), but its
    baseline one (a CPU without AVX2, or NPY_DISABLE_CPU_FEATURES) differs on a fifth to
    a third of them, and a numpy release may change them: without this, T > 0 text could
    change under an unchanged fingerprint, and a cached answer would no longer be what a
    miss gives. numpy's version and a digest of the noise on every 4099th possible uniform
    make any such change a different fingerprint instead.
    """
    probe = np.arange(1, 1 << 24, 4099, dtype=np.float32) * np.float32(2**-24)  # no 0
    _double_log_in_place(probe)
    digest = hashlib.sha256(np.negative(probe).tobytes()).hexdigest()[:16]
    return f"numpy {np.__version__}, log {digest}"


def _apply_top_p(scaled: np.ndarray, ids: np.ndarray, top_p: float) -> np.ndarray:
    """Smallest prefix (by probability, ties by id) whose mass reaches top_p."""
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    window = min(_TOP_P_WINDOW, ids.shape[0])
    while True:
        order = top_ids(probs, window)
        cumulative = np.cumsum(probs[order])
        reached = np.flatnonzero(cumulative >= top_p)
        if reached.shape[0] or window == ids.shape[0]:
            keep = int(reached[0]) + 1 if reached.shape[0] else window
            return np.sort(ids[order[:keep]])
        window = ids.shape[0]


def candidate_ids(logits: np.ndarray, params: GenerationParams) -> np.ndarray | None:
    """Token ids allowed by top_k / min_p / top_p in vocabulary order; None = all."""
    if params.top_k == 0 and params.top_p >= 1.0 and params.min_p <= 0.0:
        return None
    scaled = logits.astype(np.float64) / params.temperature
    ids = np.arange(scaled.shape[0])
    if params.min_p > 0.0:
        ids = np.flatnonzero(scaled >= scaled.max() + math.log(params.min_p))
    if params.top_k:
        ids = np.sort(ids[top_ids(scaled[ids], params.top_k)])
    if params.top_p < 1.0:
        ids = _apply_top_p(scaled[ids], ids, params.top_p)
    return ids


def sample(logits: np.ndarray, step: int, params: GenerationParams) -> int:
    """Choose the next token from a float32 logits row (the engine's, or a penalised or
    masked copy of it). Temperature 0 is argmax with ties to the lowest id.

    The noise is drawn here, between two decodes, on the thread that samples. Drawing it
    on a helper thread while the model decoded saved no time: on two cores the helper
    takes one from llama.cpp's two threads, which then wait for it at their next sync
    point (paired server runs could not tell the two apart; README, 2026-12-02)."""
    if params.temperature == 0.0:
        return int(np.argmax(logits))
    return _noisy_argmax(logits, candidate_ids(logits, params), params, step)


def _noisy_argmax(
    logits: np.ndarray, ids: np.ndarray | None, params: GenerationParams, step: int
) -> int:
    """The id among `ids` (None: all) with the largest logit / T + noise, the lowest on
    ties, drawing noise only where it can matter.

    No draw exceeds NOISE_CEILING (keel/_philox.c), so an id whose scaled logit plus the
    ceiling is below a score some id has cannot win, and its noise is never computed: of a
    49k vocabulary some hundreds to a few thousand ids are left at T = 0.7. That test runs
    on the raw logits against a bound on the top id's score, with margins far above
    float32's rounding, so after np.argmax one more pass over the vocabulary finds them
    and nothing is divided or drawn but for the contenders; the choice is the one the noise
    of every id gives (tests/unit/test_sampling.py). A NaN (np.argmax finds it first) or an
    infinite top leaves every id in, so such rows are chosen as over the whole array."""
    allowed = logits if ids is None else logits[ids]
    seed, temperature = params.seed, params.temperature
    best = int(np.argmax(allowed))
    top = best if ids is None else int(ids[best])
    least = cut(step, seed, allowed, best, top, temperature)  # the least logit that can win
    # the ids at or above it and their draws, in one C scan (keel/_philox.c)
    index = np.empty(allowed.shape[0], dtype=np.int64)
    uniform = np.empty(allowed.shape[0], dtype=np.float32)
    count, zero_drawn = contenders(step, seed, allowed, ids, least, index, uniform)
    double_log = uniform[:count]
    if zero_drawn:  # its noise is -inf, as it should be; only numpy's warning is silenced
        with np.errstate(divide="ignore"):
            _double_log_in_place(double_log)
    else:  # np.errstate costs a cold step as much as the logarithms (bench/cold.py)
        _double_log_in_place(double_log)
    chosen: int = best_score(allowed, index[:count], temperature, double_log)
    return chosen if ids is None else int(ids[chosen])


@dataclass(frozen=True)
class TokenAlternative:
    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of a chosen token under the model's own (temperature 1) distribution."""

    token_id: int
    text: str
    logprob: float
    top_logprobs: tuple[TokenAlternative, ...]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenLogprob:
        return cls(
            data["token_id"],
            data["text"],
            data["logprob"],
            tuple(
                TokenAlternative(alt["token_id"], alt["text"], alt["logprob"])
                for alt in data["top_logprobs"]
            ),
        )

    @property
    def confidence(self) -> float:
        """The chosen token's probability under the model's own distribution."""
        return math.exp(self.logprob)

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "text": self.text,
            "logprob": self.logprob,
            "confidence": self.confidence,
            "top_logprobs": [
                {"token_id": alt.token_id, "text": alt.text, "logprob": alt.logprob}
                for alt in self.top_logprobs
            ],
        }


def token_logprob(
    logits: np.ndarray, token: int, top_n: int, text_of: Callable[[int], str]
) -> TokenLogprob:
    """Log-softmax of the raw logits for the chosen token and the top_n alternatives."""
    values = logits.astype(np.float64)
    peak = values.max()
    log_norm = peak + math.log(float(np.exp(values - peak).sum()))
    alternatives = (
        tuple(
            TokenAlternative(int(i), text_of(int(i)), float(values[i] - log_norm))
            for i in top_ids(values, top_n)
        )
        if top_n
        else ()
    )
    return TokenLogprob(token, text_of(token), float(values[token] - log_norm), alternatives)
