"""Public generation functions: thin adapters over the one event stream (loop.run)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from typing import Any, TypedDict, Unpack

from . import loop, runtime
from .config import settings
from .engine import fallback
from .errors import GenerationError, ModelNotAvailableError
from .events import GenerationResponse, collect
from .models import resolve_model
from .params import DEFAULT_SEED, EOS_MARKER, make_params

_NOT_YET = {
    "schema": "structured output (schema=)",
    "regex": "regex-constrained output (regex=)",
    "choices": "choice-constrained output (choices=)",
    "response_format": "response_format=",
}


_LOCATION_KEYS = ("model", "model_repo", "model_filename", "size")


def _reject_unbuilt(options: dict[str, Any]) -> None:
    for name, label in _NOT_YET.items():
        if options.pop(name, None) is not None:
            raise NotImplementedError(f"{label} is not available in this keel version yet")
    if options.pop("unsafe_mode", False):
        raise NotImplementedError("unsafe_mode (remote backends) is not available yet")


def _events(options: dict[str, Any]) -> Iterator[GenerationResponse]:
    """Validate everything and load the model now, so bad input fails at call time,
    before the caller starts iterating."""
    _reject_unbuilt(options)
    location_args = {key: options.pop(key, None) for key in _LOCATION_KEYS}
    params = make_params(options.pop("prompt"), **options)
    try:
        loaded = runtime.load(resolve_model(**location_args))
    except ModelNotAvailableError:
        if not settings().allow_fallback:
            raise
        return fallback.run(params, runtime.fallback_fingerprint(params))
    return loop.run(loaded.engine, params, loaded.fingerprint(params))


def _raise_on_error(event: GenerationResponse) -> None:
    if event.finish_reason == "error":
        raise GenerationError(event.error or "generation failed")


def generate(
    prompt: str,
    max_new_tokens: int | None = None,
    return_logprobs: bool = False,
    eos_string: str = EOS_MARKER,
    model: str | None = None,
    model_repo: str | None = None,
    model_filename: str | None = None,
    size: str | None = None,
    seed: int = DEFAULT_SEED,
    temperature: float = 0.0,
    schema: Any = None,
    regex: str | None = None,
    choices: Sequence[str] | None = None,
    response_format: dict | None = None,
    unsafe_mode: bool = False,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    stop: str | Sequence[str] | None = None,
    top_logprobs: int = 5,
    raw: bool = False,
) -> str | tuple[str, dict | None]:
    """Generate text; with return_logprobs=True return (text, {"content": [...]})."""
    options = dict(locals())
    options["logprobs"] = options.pop("return_logprobs")
    events = _events(options)
    result = collect(events, with_logprobs=return_logprobs)
    if result.finish_reason == "error":
        raise GenerationError(result.error or "generation failed")
    if return_logprobs:
        return result.text, result.logprobs_dict()
    return result.text


class StreamOptions(TypedDict, total=False):
    """Keyword arguments of stream_generate: the same names and defaults as generate_iter."""

    max_new_tokens: int | None
    eos_string: str
    include_logprobs: bool
    model: str | None
    model_repo: str | None
    model_filename: str | None
    size: str | None
    seed: int
    temperature: float
    unsafe_mode: bool
    top_k: int
    top_p: float
    min_p: float
    stop: str | Sequence[str] | None
    top_logprobs: int
    raw: bool


def stream_generate(prompt: str, **options: Unpack[StreamOptions]) -> Iterator[GenerationResponse]:
    """Yield a GenerationResponse per sampled token; the last has finish_reason and the
    fingerprint. An engine failure ends the stream with finish_reason="error"."""
    options = {"prompt": prompt, **options}
    options["logprobs"] = options.pop("include_logprobs", False)
    return _events(options)


def generate_iter(
    prompt: str,
    max_new_tokens: int | None = None,
    eos_string: str = EOS_MARKER,
    include_logprobs: bool = False,
    model: str | None = None,
    model_repo: str | None = None,
    model_filename: str | None = None,
    size: str | None = None,
    seed: int = DEFAULT_SEED,
    temperature: float = 0.0,
    unsafe_mode: bool = False,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    stop: str | Sequence[str] | None = None,
    top_logprobs: int = 5,
    raw: bool = False,
) -> Iterator[str] | Iterator[tuple[str, dict | None]]:
    """Yield text pieces; "".join(pieces) == generate(...) for the same arguments.

    Plain mode yields only non-empty pieces. With include_logprobs=True it yields one
    (piece, logprob entry) per sampled token, where piece may be "" while text is held back.
    """
    options = dict(locals())
    options["logprobs"] = options.pop("include_logprobs")
    return _pieces(_events(options), include_logprobs)


def _pieces(events: Iterator[GenerationResponse], include_logprobs: bool):
    with closing(events):
        for event in events:
            _raise_on_error(event)
            if include_logprobs:
                if event.token >= 0:
                    yield event.text, event.logprobs.to_dict() if event.logprobs else None
                elif event.text:
                    yield event.text, None
            elif event.text:
                yield event.text


def preload_models(
    size: str | None = None,
    model: str | None = None,
    model_repo: str | None = None,
    model_filename: str | None = None,
) -> runtime.LoadedModel:
    """Load a model now (default: the default model) so the first request is fast."""
    return runtime.load(
        resolve_model(model=model, model_repo=model_repo, model_filename=model_filename, size=size)
    )
