"""Repetition controls: repetition, presence and frequency penalties and n-gram bans.

They are a pure function of the tokens generated so far (never the prompt, never other
requests), applied to a copy of the raw logits before the constraint mask, temperature and
sampling, so a run with them is exactly as reproducible as one without. The counts and the
n-gram index are kept incrementally, so a step costs the same late in a run as early.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from .params import GenerationParams


class Penalties:
    def __init__(self, params: GenerationParams) -> None:
        self._params = params
        self._recent: deque[int] = deque(maxlen=params.repetition_context_size)
        self._counts: Counter[int] = Counter()
        self._history: list[int] = []  # kept for the n-gram ban only
        # n-gram ban: (n-1 tokens) -> the tokens that followed them
        self._followers: dict[tuple[int, ...], set[int]] = {}

    @property
    def active(self) -> bool:
        return self._params.penalized

    @property
    def bans(self) -> bool:
        """Whether any token can be forbidden outright (the others only shift logits)."""
        return self._params.no_repeat_ngram_size > 0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The penalised logits (a new array; `logits` is untouched)."""
        params = self._params
        out = logits.copy()
        if params.repetition_penalty != 1.0 and self._recent:
            ids = np.fromiter(sorted(set(self._recent)), dtype=np.int64)
            values = out[ids]
            penalty = np.float32(params.repetition_penalty)
            out[ids] = np.where(values > 0, values / penalty, values * penalty)
        if (params.presence_penalty or params.frequency_penalty) and self._counts:
            ids = np.fromiter(sorted(self._counts), dtype=np.int64)
            counts = np.array([self._counts[i] for i in ids], dtype=np.float32)
            out[ids] -= (
                np.float32(params.presence_penalty) + np.float32(params.frequency_penalty) * counts
            )
        banned = self._banned()
        if banned:
            out[np.fromiter(sorted(banned), dtype=np.int64)] = -np.inf
        return out

    def _banned(self) -> set[int]:
        n = self._params.no_repeat_ngram_size
        if n == 0 or len(self._history) < n - 1:
            return set()
        prefix = tuple(self._history[len(self._history) - (n - 1) :]) if n > 1 else ()
        return self._followers.get(prefix, set())

    def accept(self, token: int) -> None:
        """Record a generated token."""
        self._recent.append(token)
        self._counts[token] += 1
        n = self._params.no_repeat_ngram_size
        if not n:
            return
        self._history.append(token)
        if len(self._history) >= n:
            gram = self._history[len(self._history) - n :]
            self._followers.setdefault(tuple(gram[:-1]), set()).add(gram[-1])
