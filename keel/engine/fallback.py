"""Opt-in deterministic stand-in text for when no model can be loaded.

Only used with KEEL_ALLOW_FALLBACK=1: fabricated text must never pass for model output, so
every event it yields is marked `fallback=True` and its fingerprint says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ..detok import StopMatcher
from ..events import Fingerprint, FinishReason, GenerationResponse
from ..params import GenerationParams

# One string split once reads better than a 37-line list.
_WORDS = (
    "the a model text output keel steady river stone light signal pattern value result "
    "system number quiet open small large early late first next simple clear data token "
    "stream course harbor compass anchor current tide bearing chart"
).split()
_MAX_WORDS = 64


def _word(params: GenerationParams, index: int) -> str:
    material = f"{params.seed}\x00{index}\x00{params.input_text}".encode()
    value = int.from_bytes(hashlib.sha256(material).digest()[:8], "big")
    return _WORDS[value % len(_WORDS)]


def run(params: GenerationParams, fingerprint: Fingerprint) -> Iterator[GenerationResponse]:
    stops = StopMatcher(params.stop_strings)
    count = min(params.max_new_tokens, _MAX_WORDS)
    for index in range(count):
        piece = ("" if index == 0 else " ") + _word(params, index)
        text, stop = stops.feed(piece)
        last = stop is not None or index + 1 == count
        if last and stop is None:
            text += stops.flush()
        yield GenerationResponse(
            text=text,
            token=index,
            logprobs=None,
            prompt_tokens=0,
            prompt_tps=0.0,
            generation_tokens=index + 1,
            generation_tps=0.0,
            peak_memory=0.0,
            finish_reason=(FinishReason.STOP_STRING if stop else FinishReason.LENGTH)
            if last
            else None,
            stop_string=stop,
            fallback=True,
            fingerprint=fingerprint if last else None,
        )
        if last:
            return
