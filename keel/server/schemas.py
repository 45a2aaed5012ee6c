"""Request bodies. Pydantic checks shapes and types; keel itself checks values (ranges,
schemas, regexes), so the server and the library reject exactly the same things."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ..params import DEFAULT_SEED, EOS_MARKER

Stop = str | list[str] | None


class GenerateRequest(BaseModel):
    """Native request: the parameters of keel.generate()."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str
    max_new_tokens: int | None = Field(
        None, validation_alias=AliasChoices("max_new_tokens", "max_tokens")
    )
    eos_string: str = EOS_MARKER
    model: str | None = None
    size: str | None = None
    seed: int = DEFAULT_SEED
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    stop: Stop = None
    logprobs: bool = False
    top_logprobs: int = 5
    raw: bool = False
    json_schema: dict[str, Any] | None = Field(
        None, validation_alias=AliasChoices("schema", "json_schema"), serialization_alias="schema"
    )
    regex: str | None = None
    choices: list[str] | None = None
    response_format: dict[str, Any] | None = None
    reasoning: bool = False
    cache: bool = True


class StreamOptions(BaseModel):
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class OpenAIRequest(BaseModel):
    """What /v1/completions and /v1/chat/completions share. Sampling defaults are keel's
    (temperature 0), so an omitted field gives the same text as the library."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = DEFAULT_SEED
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    response_format: ResponseFormat | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


class CompletionRequest(OpenAIRequest):
    prompt: str
    logprobs: int | None = None  # how many alternatives per token (0: the chosen one only)
    echo: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = None
    max_completion_tokens: int | None = None
