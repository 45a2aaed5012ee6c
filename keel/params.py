"""Generation parameters: one table of defaults, ranges and docs, and their validated form.

`PARAMETERS` is the single source of truth: the library signatures take their defaults
from it, the CLI builds its options from it, the HTTP request models and README's table
are checked against it by tests (README's table is `markdown_table()`).

One frozen dataclass, `GenerationParams`, holds everything that decides the output, so the
same object can be hashed into the fingerprint (and so the cache key) and passed unchanged
to every surface. Validation happens here, once, before any model work.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from .errors import InvalidParameterError

EOS_MARKER = "[EOS]"
MAX_SEED = 2**32 - 1
MAX_TEMPERATURE = 100.0
# Below this a positive temperature overflows float32 logits / T (found by fuzzing the
# server: 5e-324 became a division by zero); 0 itself means greedy.
MIN_TEMPERATURE = 1e-4
MAX_TOP_LOGPROBS = 20
MAX_PENALTY = 2.0  # presence and frequency, as in the OpenAI API
MAX_REPETITION_PENALTY = 10.0
# The default under a JSON schema: measured on the 42-schema suite (bench/structured_suite.py)
# it cut strings filled to their cap from 4.5% to 1.4% (SmolLM2) and 4.5% to 2.0% (Gemma),
# with every output still valid.
JSON_REPETITION_PENALTY = 1.1
ROLES = ("system", "user", "assistant", "developer", "tool")
Role = Literal["system", "user", "assistant", "developer", "tool"]


@dataclass(frozen=True)
class Parameter:
    """One argument of the generation functions: its default as the caller sees it (None
    where the value is worked out later), how that default reads in docs, and what it does."""

    name: str
    default: Any
    shown: str  # the default as README and --help show it
    doc: str


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter(
            "prompt",
            None,
            "required",
            "the user message (chat models) or raw text (base models, or `raw=True`); "
            "give `prompt` or `messages`",
        ),
        Parameter(
            "messages",
            None,
            "`None`",
            'a conversation `[{"role": ..., "content": ...}]`, rendered with the '
            "model's chat template (a base model takes exactly one user message)",
        ),
        Parameter(
            "max_new_tokens",
            None,
            "`512` (`None` = 512)",
            "upper bound on sampled tokens, >= 1",
        ),
        Parameter("return_logprobs", False, "`False`", "return `(text, logprobs)`"),
        Parameter(
            "eos_string",
            EOS_MARKER,
            '`"[EOS]"`',
            '`"[EOS]"` = the model\'s own end tokens; any other string also stops there '
            "and is not included",
        ),
        Parameter(
            "model",
            None,
            "`None` → `smollm2-135m`",
            "registry name, a path to a `.gguf` file, or a remote `provider:name` "
            "(`openai:`, `openrouter:`, `cerebras:`, `vllm:`, `llamacpp:`, `keel:`)",
        ),
        Parameter(
            "model_repo",
            None,
            "`None`",
            "a Hugging Face repo (with `model_filename`), or a local directory",
        ),
        Parameter(
            "model_filename",
            None,
            "`None`",
            "the GGUF file in `model_repo`, a relative path",
        ),
        Parameter(
            "size",
            None,
            "`None`",
            "`mini` (smollm2-135m), `small` (gemma3-270m), `large` (qwen2.5-3b, download)",
        ),
        Parameter(
            "seed",
            42,
            "`42`",
            "int in 0..2**32-1; only matters when `temperature > 0`",
        ),
        Parameter(
            "temperature",
            0.0,
            "`0.0`",
            "0 = greedy (argmax, ties to the lowest token id); 1e-4 to 100 samples (smaller "
            "positive values are refused: they overflow the logits)",
        ),
        Parameter("top_k", 0, "`0` (off)", "keep the k most likely tokens (ties by lower id)"),
        Parameter(
            "top_p",
            1.0,
            "`1.0` (off)",
            "keep the smallest most-likely set whose probability reaches p",
        ),
        Parameter(
            "min_p",
            0.0,
            "`0.0` (off)",
            "keep tokens at least `min_p` times the top token's probability",
        ),
        Parameter(
            "stop",
            None,
            "`None`",
            "a string or list of strings that end the output (excluded)",
        ),
        Parameter(
            "repetition_penalty",
            None,
            "`None`: 1.0 (off), 1.1 with a JSON schema",
            "> 0, at most 10: the logits of tokens among the last `repetition_context_size` "
            "generated ones are divided by it (if positive) or multiplied (if negative)",
        ),
        Parameter(
            "repetition_context_size",
            20,
            "`20`",
            "how many of the latest generated tokens `repetition_penalty` looks at, >= 1",
        ),
        Parameter(
            "presence_penalty",
            0.0,
            "`0.0` (off)",
            "-2 to 2, subtracted once from the logit of every token generated so far",
        ),
        Parameter(
            "frequency_penalty",
            0.0,
            "`0.0` (off)",
            "-2 to 2, subtracted from a token's logit once per time it was generated",
        ),
        Parameter(
            "no_repeat_ngram_size",
            0,
            "`0` (off)",
            "n >= 1 forbids any token that would repeat an n-gram already generated",
        ),
        Parameter(
            "top_logprobs",
            5,
            "`5`",
            f"alternatives per token in logprobs (0 to {MAX_TOP_LOGPROBS})",
        ),
        Parameter("raw", False, "`False`", "skip the chat template"),
        Parameter("cache", True, "`True`", "use the persistent result cache for this call"),
        Parameter(
            "schema",
            None,
            "`None`",
            "JSON Schema dict, Pydantic model or Python type: output is "
            "`<json-output>JSON</json-output>`",
        ),
        Parameter("regex", None, "`None`", "output fully matches the pattern"),
        Parameter("choices", None, "`None`", "output is exactly one of the strings"),
        Parameter(
            "response_format",
            None,
            "`None`",
            '`{"type": "json_object"}` or `{"type": "json_schema", "json_schema": '
            '{"schema": ...}}`',
        ),
        Parameter(
            "tools",
            None,
            "`None`",
            "functions the model may call: Python functions, Pydantic models or OpenAI-style "
            '`{"type": "function", "function": {...}}` dicts; a reply that calls them is a '
            "list of `ToolCall` (see Tool calling)",
        ),
        Parameter(
            "tool_choice",
            "auto",
            '`"auto"`',
            '`"auto"` (text or calls), `"required"` (calls), `"none"` (text), or a tool\'s name',
        ),
        Parameter(
            "parallel_tool_calls",
            True,
            "`True`",
            "with tools: allow more than one call in a reply",
        ),
        Parameter(
            "reasoning",
            False,
            "`False`",
            "with a schema: allow one line of free text (≤ 400 characters) before the JSON",
        ),
        Parameter(
            "unsafe_mode",
            False,
            "`False`",
            "allow best-effort remote backends (all but `keel:`); or `KEEL_UNSAFE_MODE=1`",
        ),
        Parameter(
            "base_url",
            None,
            "`None`",
            "a remote model's server, e.g. `http://host:8000/v1` (default: the provider's "
            "own, or its `*_BASE_URL` / `KEEL_REMOTE_URL`)",
        ),
    )
}


def default(name: str) -> Any:
    return PARAMETERS[name].default


DEFAULT_SEED: int = default("seed")
DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_TOP_LOGPROBS: int = default("top_logprobs")


def markdown_table() -> str:
    """README's parameter table, rendered from PARAMETERS."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    rows += [f"| `{p.name}` | {p.shown} | {p.doc} |" for p in PARAMETERS.values()]
    return "\n".join(rows)


def docstring_section(names: Sequence[str]) -> str:
    """An `Args:` section for a generation function's docstring, rendered from PARAMETERS."""
    lines = ["", "", "Args:"]
    for name in names:
        p = PARAMETERS[name]
        shown = p.shown.replace("`", "")
        lines.append(f"    {name}: {p.doc.replace('`', '')} (default {shown})")
    return "\n".join(lines)


Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True)
class GenerationParams:
    """Validated, canonical parameters: everything that decides an output."""

    prompt: str = ""
    messages: tuple[Message, ...] = ()  # a conversation instead of a prompt
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    eos_string: str = EOS_MARKER
    stop: tuple[str, ...] = ()
    seed: int = DEFAULT_SEED
    temperature: float = default("temperature")
    top_k: int = default("top_k")
    top_p: float = default("top_p")
    min_p: float = default("min_p")
    logprobs: bool = False
    top_logprobs: int = DEFAULT_TOP_LOGPROBS
    raw: bool = default("raw")
    constraint: str = ""  # canonical description of a structured-output grammar
    repetition_penalty: float = 1.0
    repetition_context_size: int = default("repetition_context_size")
    presence_penalty: float = default("presence_penalty")
    frequency_penalty: float = default("frequency_penalty")
    no_repeat_ngram_size: int = default("no_repeat_ngram_size")

    @property
    def penalized(self) -> bool:
        """Any repetition control is on (they all start from the generated tokens)."""
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or self.no_repeat_ngram_size > 0
        )

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """All strings that end generation: `stop` plus a custom `eos_string`."""
        if self.eos_string == EOS_MARKER or self.eos_string in self.stop:
            return self.stop
        return (*self.stop, self.eos_string)

    @property
    def input_text(self) -> str:
        """The input as one string, for cache keys and the stand-in text: the prompt, or
        the conversation as canonical JSON (a prompt can never look like it: the marker
        byte cannot be typed by accident, and a prompt key has no marker)."""
        if not self.messages:
            return self.prompt
        return "\x01messages" + json.dumps(self.messages, ensure_ascii=False)

    def sampling_dict(self) -> dict[str, Any]:
        """Everything but the input, for fingerprints and logs."""
        values = {name: getattr(self, name) for name in _SAMPLING_FIELDS}
        values["stop"] = list(self.stop)
        return values


_SAMPLING_FIELDS = tuple(
    f.name for f in fields(GenerationParams) if f.name not in ("prompt", "messages")
)


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


def normalise_messages(messages: object) -> tuple[Message, ...]:
    """A conversation as (role, content) pairs; anything else is refused by name."""
    _require(
        isinstance(messages, Sequence) and not isinstance(messages, str) and len(messages) > 0,
        f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r}",
    )
    assert isinstance(messages, Sequence)
    pairs = []
    for index, message in enumerate(messages):
        _require(
            isinstance(message, Mapping) and set(message) <= {"role", "content"},
            f"messages[{index}] must be a dict with 'role' and 'content', got {message!r}",
        )
        assert isinstance(message, Mapping)
        role, content = message.get("role"), message.get("content", "")
        _require(role in ROLES, f"messages[{index}]['role'] must be one of {ROLES}, got {role!r}")
        _require(
            isinstance(content, str),
            f"messages[{index}]['content'] must be str, got {type(content).__name__}",
        )
        pairs.append((str(role), str(content)))
    return tuple(pairs)


def make_params(
    prompt: str | None = None,
    *,
    messages: object = None,
    max_new_tokens: int | None = None,
    eos_string: str = EOS_MARKER,
    stop: str | Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
    temperature: float = default("temperature"),
    top_k: int = default("top_k"),
    top_p: float = default("top_p"),
    min_p: float = default("min_p"),
    logprobs: bool = False,
    top_logprobs: int = DEFAULT_TOP_LOGPROBS,
    raw: bool = default("raw"),
    constraint: str = "",
    repetition_penalty: float | None = default("repetition_penalty"),
    repetition_context_size: int = default("repetition_context_size"),
    presence_penalty: float = default("presence_penalty"),
    frequency_penalty: float = default("frequency_penalty"),
    no_repeat_ngram_size: int = default("no_repeat_ngram_size"),
    json_output: bool = False,
) -> GenerationParams:
    """Check every parameter and return the canonical form; raise InvalidParameterError."""
    _require(
        (prompt is None) != (messages is None),
        "give exactly one of prompt and messages",
    )
    conversation: tuple[Message, ...] = ()
    if messages is not None:
        conversation = normalise_messages(messages)
        _require(not raw, "raw=True skips the chat template, so it cannot take messages")
    else:
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
    if repetition_penalty is None:
        repetition_penalty = JSON_REPETITION_PENALTY if json_output else 1.0
    _require(
        _is_number(repetition_penalty) and 0.0 < repetition_penalty <= MAX_REPETITION_PENALTY,
        f"repetition_penalty must be in (0, {MAX_REPETITION_PENALTY}] (1.0 is off), "
        f"got {repetition_penalty!r}",
    )
    _require(
        _is_int(repetition_context_size) and repetition_context_size >= 1,
        f"repetition_context_size must be an int >= 1, got {repetition_context_size!r}",
    )
    for name, value in (
        ("presence_penalty", presence_penalty),
        ("frequency_penalty", frequency_penalty),
    ):
        _require(
            _is_number(value) and -MAX_PENALTY <= value <= MAX_PENALTY,
            f"{name} must be a number in [-{MAX_PENALTY}, {MAX_PENALTY}], got {value!r}",
        )
    _require(
        _is_int(no_repeat_ngram_size) and no_repeat_ngram_size >= 0,
        f"no_repeat_ngram_size must be an int >= 0 (0 is off), got {no_repeat_ngram_size!r}",
    )
    return GenerationParams(
        prompt=prompt if isinstance(prompt, str) else "",
        messages=conversation,
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
        repetition_penalty=float(repetition_penalty),
        repetition_context_size=repetition_context_size,
        presence_penalty=float(presence_penalty),
        frequency_penalty=float(frequency_penalty),
        no_repeat_ngram_size=no_repeat_ngram_size,
    )
