"""Public generation functions: thin adapters over the one event stream (generation.py).

Defaults come from the parameter table in params.py; each function's `Args:` section is
rendered from it too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from . import remote
from .cache import Recorder, cache_key, result_cache
from .call_memo import CallMemo
from .config import settings
from .engine import fallback
from .errors import GenerationError, InvalidParameterError, ModelNotAvailableError, warn_caller
from .events import Fingerprint, FinishReason, GenerationResponse, GenerationResult
from .generation import Generation
from .handle import Check, GenerationHandle
from .loaded import LoadedModel, ModelIdentity, fallback_fingerprint, identify, load, load_location
from .models import resolve_model
from .params import DEFAULT_SEED, GenerationParams, default, docstring_section, make_params
from .prompt import prepare_prompt
from .sources import EventSource, Precomputed
from .structured import (
    CALL_OPEN,
    Constraint,
    ConstraintKind,
    build_constraint,
    open_session,
    plain_messages,
    read_calls,
    tool_constraint,
    tools_from,
    with_tools_prompt,
)

LOCATION_KEYS = ("model", "model_repo", "model_filename", "size")
_CONSTRAINT_KEYS = ("schema", "regex", "choices", "response_format", "reasoning")
_TOOL_KEYS = ("tools", "tool_choice", "parallel_tool_calls")
_calls = CallMemo()


class _ModelAndSampling(TypedDict, total=False):
    messages: Sequence[dict[str, str]] | None
    model: str | None
    model_repo: str | None
    model_filename: str | None
    size: str | None
    seed: int
    temperature: float
    response_format: dict[str, Any] | None
    reasoning: bool
    unsafe_mode: bool
    base_url: str | None
    top_k: int
    top_p: float
    min_p: float
    stop: str | Sequence[str] | None
    top_logprobs: int
    raw: bool
    cache: bool
    repetition_penalty: float | None
    repetition_context_size: int
    presence_penalty: float
    frequency_penalty: float
    no_repeat_ngram_size: int


class _Length(TypedDict, total=False):
    max_new_tokens: int | None
    eos_string: str


class _Constraints(TypedDict, total=False):
    schema: Any
    regex: str | None
    choices: Sequence[str] | None
    tools: Sequence[Any] | None
    tool_choice: Any
    parallel_tool_calls: bool


class GenerationOptions(_ModelAndSampling, _Length, _Constraints, total=False):
    """Keyword arguments shared by every generation function (see generate)."""


class StreamOptions(GenerationOptions, total=False):
    include_logprobs: bool


class _IterOptions(_ModelAndSampling, _Constraints, total=False):
    """generate_iter's keywords: it names the length options itself."""


class _ShapedOptions(_ModelAndSampling, _Length, total=False):
    """generate_json/regex/choice's keywords: each names its own constraint."""


@dataclass(frozen=True)
class _Prepared:
    handle: GenerationHandle
    local_model: ModelIdentity | None  # whose file the call memo checks; None: remote


@dataclass(frozen=True)
class _Split:
    location: dict[str, Any]
    base_url: str | None
    unsafe_mode: bool
    use_cache: bool
    constraint: Constraint | None


def _split(options: dict[str, Any]) -> _Split:
    """Take the location, remote, cache and constraint options out of `options` (what
    is left are the sampling parameters), checking their types and compiling the
    constraint."""
    unsafe_mode = options.pop("unsafe_mode", False)
    base_url = options.pop("base_url", None)
    use_cache = options.pop("cache", True)
    if not isinstance(use_cache, bool):
        raise InvalidParameterError(f"cache must be bool, got {use_cache!r}")
    location = {key: options.pop(key, None) for key in LOCATION_KEYS}
    constraint = build_constraint(
        **{key: options.pop(key) for key in _CONSTRAINT_KEYS if key in options}
    )
    tool_options = {key: options.pop(key) for key in _TOOL_KEYS if key in options}
    if options.get("messages") is not None:
        options["messages"] = plain_messages(options["messages"])
    tools = tool_options.pop("tools", None)
    if tools is not None:
        if constraint is not None:
            raise InvalidParameterError(
                "tools cannot be combined with schema, regex, choices or response_format"
            )
        constraint = _with_tools(options, tools, **tool_options)
    elif any(value != default(name) for name, value in tool_options.items()):
        raise InvalidParameterError(f"{', '.join(sorted(tool_options))} need tools")
    if not isinstance(unsafe_mode, bool):
        raise InvalidParameterError(f"unsafe_mode must be bool, got {unsafe_mode!r}")
    return _Split(location, base_url, unsafe_mode, use_cache, constraint)


def _with_tools(
    options: dict[str, Any],
    tools: Any,
    tool_choice: Any = default("tool_choice"),
    parallel_tool_calls: bool = default("parallel_tool_calls"),
) -> Constraint | None:
    """The grammar calls are generated under, and the tools shown to the model in a system
    message (a prompt becomes the conversation's user message)."""
    if options.get("raw"):
        raise InvalidParameterError("tools need the chat template; raw=True has none")
    defined = tools_from(tools)
    constraint = tool_constraint(defined, tool_choice, parallel_tool_calls)
    if constraint is None:  # tool_choice="none": a plain text reply
        return None
    messages = options.get("messages")
    if messages is None:
        prompt = options.pop("prompt", None)
        messages = [{"role": "user", "content": prompt or ""}]
    options["messages"] = with_tools_prompt(list(messages), constraint.tools)
    return constraint


def _local_params(constraint: Constraint | None, options: dict[str, Any]) -> GenerationParams:
    return make_params(
        constraint=constraint.key if constraint else "",
        json_output=constraint is not None and constraint.kind is ConstraintKind.JSON,
        **options,
    )


def check_request(prompt: str | None = None, **options: Any) -> None:
    """Raise now what generate(prompt, **options) would refuse before generating (an
    unknown or out-of-range parameter, an invalid schema or regex, an unknown model),
    without generating, loading a model or asking a remote server: batch jobs check every
    row this way before the first one runs."""
    options = {"prompt": prompt, **options}
    split = _split(options)
    if remote.is_remote(split.location["model"]):
        return  # its parameters are checked against the provider when the row runs
    _local_params(split.constraint, options)
    resolve_model(**split.location)


def _prepare(options: dict[str, Any]) -> _Prepared:
    """Validate everything, compile any constraint and find the model now, so bad input
    fails at call time, before the caller starts iterating. A cache hit is replayed
    without loading the model (or asking the remote server); otherwise the job goes to
    the model's worker, or the request to the remote server."""
    split = _split(options)
    location, base_url, unsafe_mode = split.location, split.base_url, split.unsafe_mode
    use_cache, constraint = split.use_cache, split.constraint
    current = settings()
    if remote.is_remote(location["model"]):
        call = remote.plan(location, base_url, unsafe_mode, constraint, options, current)
        _warn_if_seed_unused(call.params.seed, call.params.temperature)
        handle = _started(
            call.params, call.fingerprint, use_cache, constraint, lambda: remote.RemoteSource(call)
        )
        return _Prepared(handle, None)
    if base_url is not None:
        raise InvalidParameterError("base_url is for remote models ('provider:name') only")
    params = _local_params(constraint, options)
    try:
        identity = identify(resolve_model(**location))
    except ModelNotAvailableError:
        if constraint is not None or not current.allow_fallback:
            raise  # stand-in text could never satisfy a constraint
        fingerprint = fallback_fingerprint(params)
        stand_in = Precomputed(fallback.run(params, fingerprint))
        handle = GenerationHandle(
            stand_in, params.logprobs, constraint=constraint, fingerprint=fingerprint
        )
        return _Prepared(handle, None)
    _warn_if_seed_unused(params.seed, params.temperature)  # the stand-in text uses seeds
    fingerprint = identity.fingerprint(params)

    def start() -> EventSource:
        lane = load(identity).lane()
        session = open_session(lane.engine, constraint) if constraint else None
        if session is not None:
            session.require_budget(params.max_new_tokens)
        prompt = prepare_prompt(lane.engine, params)
        return lane.worker.submit(Generation(lane.engine, prompt, params, fingerprint, session))

    handle = _started(params, fingerprint, use_cache, constraint, start)
    return _Prepared(handle, identity)


def _started(
    params: GenerationParams,
    fingerprint: Fingerprint,
    use_cache: bool,
    constraint: Constraint | None,
    start: Callable[[], EventSource],
) -> GenerationHandle:
    """Replay the cached result, or start() the generation and record it once complete."""
    cache = result_cache() if use_cache else None
    key = cache_key(fingerprint, params.input_text) if cache else None
    record = cache.get(key) if cache and key else None
    checks: list[Check] = []
    source: EventSource
    if record is not None:
        source = Precomputed(record.replay(), record.result)
    else:
        source = start()
        if cache and key:
            checks.append(Recorder(lambda done: cache.put(key, done)))
    return GenerationHandle(
        source,
        params.logprobs,
        checks=checks,
        constraint=constraint,
        fingerprint=fingerprint,
        cache_key=key,
    )


def _warn_if_seed_unused(seed: Any, temperature: Any) -> None:
    """Greedy decoding ignores the seed; a caller who chose one likely expects it to matter."""
    if temperature == 0 and seed != DEFAULT_SEED:
        warn_caller(  # one text for every seed: the filter then shows it once per line
            "a seed has no effect at temperature=0 (greedy decoding); set temperature > 0 "
            "for seeded sampling"
        )


def _result(options: dict[str, Any]) -> GenerationResult:
    """Run to completion (a validated value under a constraint travels with the result)."""
    return _prepare(options).handle.result()


def generate(
    prompt: str | None = None,
    max_new_tokens: int | None = default("max_new_tokens"),
    return_logprobs: bool = default("return_logprobs"),
    eos_string: str = default("eos_string"),
    model: str | None = default("model"),
    model_repo: str | None = default("model_repo"),
    model_filename: str | None = default("model_filename"),
    size: str | None = default("size"),
    seed: int = default("seed"),
    temperature: float = default("temperature"),
    schema: Any = default("schema"),
    regex: str | None = default("regex"),
    choices: Sequence[str] | None = default("choices"),
    response_format: dict[str, Any] | None = default("response_format"),
    unsafe_mode: bool = default("unsafe_mode"),
    *,
    tools: Sequence[Any] | None = default("tools"),
    tool_choice: Any = default("tool_choice"),
    parallel_tool_calls: bool = default("parallel_tool_calls"),
    base_url: str | None = default("base_url"),
    messages: Sequence[dict[str, str]] | None = default("messages"),
    top_k: int = default("top_k"),
    top_p: float = default("top_p"),
    min_p: float = default("min_p"),
    stop: str | Sequence[str] | None = default("stop"),
    top_logprobs: int = default("top_logprobs"),
    raw: bool = default("raw"),
    reasoning: bool = default("reasoning"),
    cache: bool = default("cache"),
    repetition_penalty: float | None = default("repetition_penalty"),
    repetition_context_size: int = default("repetition_context_size"),
    presence_penalty: float = default("presence_penalty"),
    frequency_penalty: float = default("frequency_penalty"),
    no_repeat_ngram_size: int = default("no_repeat_ngram_size"),
) -> Any:
    """Generate text; with return_logprobs=True return (text, {"content": [...]}).
    With tools, a reply that calls them is a list of ToolCall instead of text.

    With schema / response_format the text is the JSON wrapped in <json-output> tags, with
    regex it fully matches the pattern, with choices it is one of them; it is validated
    before it is returned (StructuredOutputError otherwise)."""
    options = dict(locals())
    current = settings()
    store = result_cache(current) if cache is True else None
    call = CallMemo.call_key(store, current, options) if store else None
    record = _calls.recall(store, call) if store and call else None
    if record is not None:
        _warn_if_seed_unused(seed, temperature)
        text, logprobs = record.text, record.logprobs_dict()
    else:
        options["logprobs"] = options.pop("return_logprobs")
        prepared = _prepare(options)
        result = prepared.handle.result()
        if call and prepared.handle.cache_key:
            _calls.note(call, prepared.handle.cache_key, prepared.local_model)
        text, logprobs = result.text, result.logprobs_dict()
    reply: Any = text
    if tools is not None and tool_choice != "none" and text.startswith(CALL_OPEN):
        reply = read_calls(text)  # the calls, never text for the caller to parse
    return (reply, logprobs) if return_logprobs else reply


def stream_generate(
    prompt: str | None = None, **options: Unpack[StreamOptions]
) -> Iterator[GenerationResponse]:
    """Yield a GenerationResponse per sampled token; the last has finish_reason and the
    fingerprint. An engine failure ends the stream with finish_reason="error"."""
    return iter(start_generation(prompt, **options))


def generate_iter(
    prompt: str | None = None,
    max_new_tokens: int | None = default("max_new_tokens"),
    eos_string: str = default("eos_string"),
    include_logprobs: bool = False,
    **options: Unpack[_IterOptions],
) -> Iterator[str] | Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield text pieces; "".join(pieces) == generate(...) for the same arguments.

    Plain mode yields only non-empty pieces. With include_logprobs=True it yields one
    (piece, logprob entry) per sampled token, where piece may be "" while text is held back."""
    events = stream_generate(
        prompt,
        max_new_tokens=max_new_tokens,
        eos_string=eos_string,
        include_logprobs=include_logprobs,
        **options,
    )
    return _pieces(events, include_logprobs)


Piece = str | tuple[str, dict[str, Any] | None]


def piece_of(event: GenerationResponse, include_logprobs: bool) -> Piece | None:
    """What generate_iter yields for one event (None: nothing); raises on an error event."""
    if event.finish_reason == FinishReason.ERROR:
        raise GenerationError(event.error or "generation failed")
    if include_logprobs:
        if event.token >= 0 or event.text:
            return event.text, event.logprobs.to_dict() if event.logprobs else None
        return None
    return event.text or None


def _pieces(events: Iterator[GenerationResponse], include_logprobs: bool) -> Iterator[Any]:
    with closing(events):  # type: ignore[type-var]
        for event in events:
            piece = piece_of(event, include_logprobs)
            if piece is not None:
                yield piece


def generate_json(prompt: str | None, schema: Any, **options: Unpack[_ShapedOptions]) -> Any:
    """The parsed JSON value: a Pydantic instance when schema is a model class, a value of
    the given Python type, or plain JSON data for a JSON Schema dict."""
    return _result({"prompt": prompt, "schema": schema, **options}).value


def generate_regex(prompt: str | None, regex: str, **options: Unpack[_ShapedOptions]) -> str:
    """Text that re.fullmatch(regex, text) accepts."""
    text: str = _result({"prompt": prompt, "regex": regex, **options}).value
    return text


def generate_choice(
    prompt: str | None, choices: Sequence[str], **options: Unpack[_ShapedOptions]
) -> str:
    """Exactly one of the choices."""
    text: str = _result({"prompt": prompt, "choices": choices, **options}).value
    return text


def start_generation(
    prompt: str | None = None, **options: Unpack[StreamOptions]
) -> GenerationHandle:
    """Start a generation and return its handle: iterate it (or `async for`) for events,
    `cancel()` it, and `result()` / `await aresult()` for the outcome once the model is
    free again. Use it as a context manager to cancel on early exit."""
    arguments: dict[str, Any] = {"prompt": prompt, **options}
    arguments["logprobs"] = arguments.pop("include_logprobs", False)
    return _prepare(arguments).handle


def _wants_event(callback: Callable[..., Any]) -> bool:
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
    prompt: str | None,
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
    prompt: str | None = None, **options: Unpack[StreamOptions]
) -> Iterator[int | GenerationResponse]:
    """Token ids as they are sampled, then the final GenerationResponse (finish reason and
    stats) as the last item, for token-level consumers."""
    handle = start_generation(prompt, **options)

    def tokens() -> Iterator[int | GenerationResponse]:
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
) -> LoadedModel:
    """Load a model now (default: the default model) so the first request is fast."""
    return load_location(
        resolve_model(model=model, model_repo=model_repo, model_filename=model_filename, size=size)
    )


_COMMON = [
    "max_new_tokens", "eos_string", "model", "model_repo", "model_filename", "size", "seed",
    "temperature", "schema", "regex", "choices", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "unsafe_mode", "base_url",
    "top_k", "top_p", "min_p", "stop", "top_logprobs", "raw", "reasoning", "cache",
    "repetition_penalty", "repetition_context_size", "presence_penalty", "frequency_penalty",
    "no_repeat_ngram_size",
]  # fmt: skip
if generate.__doc__:  # None under python -OO
    generate.__doc__ += docstring_section(["prompt", "messages", "return_logprobs", *_COMMON])
