"""Public generation functions: thin adapters over the one event stream (loop.Sequence)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from typing import Any, TypedDict, Unpack

from . import loop, runtime
from .cache import cache_key, result_cache
from .config import settings
from .engine import fallback
from .errors import GenerationError, InvalidParameterError, ModelNotAvailableError
from .events import GenerationResponse, GenerationResult
from .models import resolve_model
from .params import DEFAULT_SEED, EOS_MARKER, make_params
from .record import Recorder
from .stream import GenerationHandle
from .structured import OutputValidator, build_constraint, open_session, validate_output

_LOCATION_KEYS = ("model", "model_repo", "model_filename", "size")
_CONSTRAINT_KEYS = ("schema", "regex", "choices", "response_format", "reasoning")


class GenerationOptions(TypedDict, total=False):
    """Keyword arguments shared by every generation function (see generate)."""

    max_new_tokens: int | None
    eos_string: str
    model: str | None
    model_repo: str | None
    model_filename: str | None
    size: str | None
    seed: int
    temperature: float
    schema: Any
    regex: str | None
    choices: Sequence[str] | None
    response_format: dict | None
    reasoning: bool
    unsafe_mode: bool
    top_k: int
    top_p: float
    min_p: float
    stop: str | Sequence[str] | None
    top_logprobs: int
    raw: bool
    cache: bool


class StreamOptions(GenerationOptions, total=False):
    include_logprobs: bool


def _prepare(options: dict[str, Any]) -> GenerationHandle:
    """Validate everything, compile any constraint and find the model now, so bad input
    fails at call time, before the caller starts iterating. A cache hit is replayed
    without loading the model; otherwise the job goes to the model's worker."""
    if options.pop("unsafe_mode", False):
        raise NotImplementedError("unsafe_mode (remote backends) is not available yet")
    use_cache = options.pop("cache", True)
    if not isinstance(use_cache, bool):
        raise InvalidParameterError(f"cache must be bool, got {use_cache!r}")
    location = {key: options.pop(key, None) for key in _LOCATION_KEYS}
    constraint = build_constraint(
        **{key: options.pop(key) for key in _CONSTRAINT_KEYS if key in options}
    )
    prompt = options.pop("prompt")
    if constraint is not None and not options.get("raw") and isinstance(prompt, str):
        prompt += constraint.prompt_hint
    params = make_params(prompt, constraint=constraint.key if constraint else "", **options)
    checks = [OutputValidator(constraint)] if constraint else []
    try:
        identity = runtime.identify(resolve_model(**location))
    except ModelNotAvailableError:
        if constraint is not None or not settings().allow_fallback:
            raise  # stand-in text could never satisfy a constraint
        fingerprint = runtime.fallback_fingerprint(params)
        stand_in = fallback.run(params, fingerprint)
        return GenerationHandle(
            stand_in, checks, params.logprobs, constraint=constraint, fingerprint=fingerprint
        )
    fingerprint = identity.fingerprint(params)
    cache = result_cache() if use_cache else None
    key = cache_key(fingerprint, params.prompt) if cache else None
    record = cache.get(key) if cache else None
    if record is not None:
        source = record.replay()
    else:
        loaded = runtime.load(identity)
        session = open_session(loaded.engine, constraint) if constraint else None
        prompt_tokens = loop.prepare_prompt(loaded.engine, params)
        source = loaded.worker.submit(
            loop.Sequence(loaded.engine, prompt_tokens, params, fingerprint, session)
        )
        if cache:
            checks.append(Recorder(lambda done: cache.put(key, done)))
    return GenerationHandle(
        source,
        checks,
        params.logprobs,
        constraint=constraint,
        cache_key=key,
        record=record,
        fingerprint=fingerprint,
    )


def _result(
    options: dict[str, Any], with_logprobs: bool
) -> tuple[GenerationResult, Any, str | None]:
    """Run to completion; return the result, the parsed value under a constraint, and the
    cache key (None when not caching)."""
    handle = _prepare(options)
    if handle.record is not None:
        handle.close()
        result = handle.record.result()
    else:
        result = handle.result()
    constraint = handle.constraint
    value = validate_output(constraint, result.text, result.finish_reason) if constraint else None
    return result, value, handle.cache_key


def _call_key(options: dict[str, Any]) -> tuple | None:
    """A hashable form of a generate() call, for the in-memory fast path; None when the
    arguments are not hashable (e.g. a schema dict) and the full path is taken."""
    try:
        values = (tuple(v) if isinstance(v, list) else v for v in options.values())
        call = (os.environ.get("KEEL_N_CTX"), *values)
        hash(call)
    except TypeError:
        return None
    return call


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
    reasoning: bool = False,
    cache: bool = True,
) -> str | tuple[str, dict | None]:
    """Generate text; with return_logprobs=True return (text, {"content": [...]}).

    With schema / response_format the text is the JSON wrapped in <json-output> tags, with
    regex it fully matches the pattern, with choices it is one of them; it is validated
    before it is returned (StructuredOutputError otherwise).
    """
    options = dict(locals())
    store = result_cache() if cache else None
    call = _call_key(options) if store else None
    record = store.recall(call) if call else None
    if record is None:
        options["logprobs"] = options.pop("return_logprobs")
        result, _, key = _result(options, with_logprobs=return_logprobs)
        if call and key:
            store.note_call(call, key)
        text, logprobs = result.text, result.logprobs_dict()
    else:
        text, logprobs = record.text, record.logprobs_dict()
    return (text, logprobs) if return_logprobs else text


def stream_generate(prompt: str, **options: Unpack[StreamOptions]) -> Iterator[GenerationResponse]:
    """Yield a GenerationResponse per sampled token; the last has finish_reason and the
    fingerprint. An engine failure ends the stream with finish_reason="error"."""
    options = {"prompt": prompt, **options}
    options["logprobs"] = options.pop("include_logprobs", False)
    return iter(_prepare(options))


def generate_iter(
    prompt: str,
    max_new_tokens: int | None = None,
    eos_string: str = EOS_MARKER,
    include_logprobs: bool = False,
    **options: Unpack[GenerationOptions],
) -> Iterator[str] | Iterator[tuple[str, dict | None]]:
    """Yield text pieces; "".join(pieces) == generate(...) for the same arguments.

    Plain mode yields only non-empty pieces. With include_logprobs=True it yields one
    (piece, logprob entry) per sampled token, where piece may be "" while text is held back.
    """
    events = stream_generate(
        prompt,
        max_new_tokens=max_new_tokens,
        eos_string=eos_string,
        include_logprobs=include_logprobs,
        **options,
    )
    return _pieces(events, include_logprobs)


def piece_of(event: GenerationResponse, include_logprobs: bool):
    """What generate_iter yields for one event (None: nothing); raises on an error event."""
    if event.finish_reason == "error":
        raise GenerationError(event.error or "generation failed")
    if include_logprobs:
        if event.token >= 0 or event.text:
            return event.text, event.logprobs.to_dict() if event.logprobs else None
        return None
    return event.text or None


def _pieces(events: Iterator[GenerationResponse], include_logprobs: bool):
    with closing(events):
        for event in events:
            piece = piece_of(event, include_logprobs)
            if piece is not None:
                yield piece


def generate_json(prompt: str, schema: Any, **options: Unpack[GenerationOptions]) -> Any:
    """The parsed JSON value: a Pydantic instance when schema is a model class, a value of
    the given Python type, or plain JSON data for a JSON Schema dict."""
    return _result({"prompt": prompt, "schema": schema, **options}, with_logprobs=False)[1]


def generate_regex(prompt: str, regex: str, **options: Unpack[GenerationOptions]) -> str:
    """Text that re.fullmatch(regex, text) accepts."""
    return _result({"prompt": prompt, "regex": regex, **options}, with_logprobs=False)[1]


def generate_choice(
    prompt: str, choices: Sequence[str], **options: Unpack[GenerationOptions]
) -> str:
    """Exactly one of the choices."""
    return _result({"prompt": prompt, "choices": choices, **options}, with_logprobs=False)[1]


def start_generation(prompt: str, **options: Unpack[StreamOptions]) -> GenerationHandle:
    """Start a generation and return its handle: iterate it (or `async for`) for events,
    `cancel()` it, and `result()` / `await aresult()` for the outcome once the model is
    free again. Use it as a context manager to cancel on early exit."""
    options = {"prompt": prompt, **options}
    options["logprobs"] = options.pop("include_logprobs", False)
    return _prepare(options)


def _wants_event(callback: Callable) -> bool:
    """Callbacks may take (piece) or (piece, event): two required positional parameters
    (or *args) get the event too."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def generate_streaming(
    prompt: str,
    callback: Callable[..., bool | None],
    **options: Unpack[StreamOptions],
) -> GenerationResult:
    """Call callback(piece) or callback(piece, event) for every sampled token; returning
    False stops generation, and the result then has finish_reason="cancelled" and exactly
    the text of the pieces delivered so far."""
    if not callable(callback):
        raise InvalidParameterError(f"callback must be callable, got {callback!r}")
    with_event = _wants_event(callback)
    with start_generation(prompt, **options) as handle:
        for event in handle:
            keep_going = callback(event.text, event) if with_event else callback(event.text)
            if keep_going is False and event.finish_reason is None:
                handle.cancel()
                break
        return handle.result()


def stream_tokens(
    prompt: str, **options: Unpack[StreamOptions]
) -> Iterator[int | GenerationResponse]:
    """Token ids as they are sampled, then the final GenerationResponse (finish reason and
    stats) as the last item, for token-level consumers."""
    handle = start_generation(prompt, **options)

    def tokens():
        with handle:
            for event in handle:
                if event.token >= 0:
                    yield event.token
                if event.finish_reason is not None:
                    yield event

    return tokens()


def preload_models(
    size: str | None = None,
    model: str | None = None,
    model_repo: str | None = None,
    model_filename: str | None = None,
) -> runtime.LoadedModel:
    """Load a model now (default: the default model) so the first request is fast."""
    return runtime.load_location(
        resolve_model(model=model, model_repo=model_repo, model_filename=model_filename, size=size)
    )
