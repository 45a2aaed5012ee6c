"""Validated, normalised generation parameters.

One frozen dataclass holds everything that decides the output, so the same object can be
hashed into the fingerprint (and later the cache key) and passed unchanged to every
surface. Validation happens here, once, before any model work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

from .errors import InvalidParameterError

DEFAULT_SEED = 42
DEFAULT_MAX_NEW_TOKENS = 512
EOS_MARKER = "[EOS]"
MAX_SEED = 2**32 - 1
MAX_TEMPERATURE = 100.0
# Below this a positive temperature overflows float32 logits / T (found by fuzzing the
# server: 5e-324 became a division by zero); 0 itself means greedy.
MIN_TEMPERATURE = 1e-4
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    eos_string: str = EOS_MARKER
    stop: tuple[str, ...] = ()
    seed: int = DEFAULT_SEED
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 5
    raw: bool = False
    constraint: str = ""  # canonical description of a structured-output grammar

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """All strings that end generation: `stop` plus a custom `eos_string`."""
        if self.eos_string == EOS_MARKER or self.eos_string in self.stop:
            return self.stop
        return (*self.stop, self.eos_string)

    def sampling_dict(self) -> dict:
        """Everything but the prompt, for fingerprints and logs."""
        values = {name: getattr(self, name) for name in _SAMPLING_FIELDS}
        values["stop"] = list(self.stop)
        return values


_SAMPLING_FIELDS = tuple(f.name for f in fields(GenerationParams) if f.name != "prompt")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidParameterError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _normalise_stop(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = (stop,) if isinstance(stop, str) else tuple(stop)
    for item in items:
        _require(
            isinstance(item, str) and item != "",
            f"stop strings must be non-empty str, got {item!r}",
        )
    return tuple(dict.fromkeys(items))


def make_params(
    prompt: str,
    *,
    max_new_tokens: int | None = None,
    eos_string: str = EOS_MARKER,
    stop: str | Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    logprobs: bool = False,
    top_logprobs: int = 5,
    raw: bool = False,
    constraint: str = "",
) -> GenerationParams:
    """Check every parameter and return the canonical form; raise InvalidParameterError."""
    _require(isinstance(prompt, str), f"prompt must be str, got {type(prompt).__name__}")
    if max_new_tokens is None:
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    _require(
        _is_int(max_new_tokens) and max_new_tokens >= 1,
        f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}",
    )
    _require(
        isinstance(eos_string, str) and eos_string != "",
        f"eos_string must be a non-empty str ('[EOS]' for the model's own end), got {eos_string!r}",
    )
    _require(
        _is_int(seed) and 0 <= seed <= MAX_SEED,
        f"seed must be an int in 0..{MAX_SEED}, got {seed!r}",
    )
    _require(
        _is_number(temperature)
        and math.isfinite(temperature)
        and (temperature == 0.0 or MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE),
        f"temperature must be 0 (greedy) or a number in [{MIN_TEMPERATURE}, "
        f"{MAX_TEMPERATURE}], got {temperature!r}",
    )
    _require(_is_int(top_k) and top_k >= 0, f"top_k must be an int >= 0, got {top_k!r}")
    _require(_is_number(top_p) and 0.0 < top_p <= 1.0, f"top_p must be in (0, 1], got {top_p!r}")
    _require(_is_number(min_p) and 0.0 <= min_p < 1.0, f"min_p must be in [0, 1), got {min_p!r}")
    _require(isinstance(logprobs, bool), f"logprobs must be bool, got {logprobs!r}")
    _require(
        _is_int(top_logprobs) and 0 <= top_logprobs <= MAX_TOP_LOGPROBS,
        f"top_logprobs must be an int in 0..{MAX_TOP_LOGPROBS}, got {top_logprobs!r}",
    )
    _require(isinstance(raw, bool), f"raw must be bool, got {raw!r}")
    return GenerationParams(
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        eos_string=eos_string,
        stop=_normalise_stop(stop),
        seed=seed,
        temperature=float(temperature),
        top_k=top_k,
        top_p=float(top_p),
        min_p=float(min_p),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        raw=raw,
        constraint=constraint,
    )
