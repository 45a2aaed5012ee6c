"""Request bodies. Pydantic checks shapes and types; keel itself checks values (ranges,
schemas, regexes), so the server and the library reject exactly the same things."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from ..params import PARAMETERS, Role

Stop = str | list[str] | None


def _field(name: str, **extra: Any) -> Any:
    """A request field with the library's default and doc (params.PARAMETERS)."""
    spec = PARAMETERS[name]
    return Field(spec.default, description=spec.doc, **extra)


class KeelControls(BaseModel):
    """keel's controls beyond OpenAI's: on the native route, and on the OpenAI-compatible
    ones (where vLLM and llama.cpp take top_k, min_p and repetition_penalty by the same
    names, and a keel: client sends them all, so a remote run decodes as a local one)."""

    eos_string: str = _field("eos_string")
    top_k: int = _field("top_k")
    min_p: float = _field("min_p")
    repetition_penalty: float | None = _field("repetition_penalty")
    repetition_context_size: int = _field("repetition_context_size")
    no_repeat_ngram_size: int = _field("no_repeat_ngram_size")
    reasoning: bool = _field("reasoning")


class Message(BaseModel):
    """A chat message on the native routes: text content only."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


class GenerateRequest(KeelControls):
    """Native request: the parameters of keel.generate()."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str | None = Field(None, description=PARAMETERS["prompt"].doc)
    messages: list[Message] | None = Field(
        None, min_length=1, description=PARAMETERS["messages"].doc
    )
    max_new_tokens: int | None = _field(
        "max_new_tokens", validation_alias=AliasChoices("max_new_tokens", "max_tokens")
    )
    model: str | None = _field("model")
    size: str | None = _field("size")
    seed: int = _field("seed")
    temperature: float = _field("temperature")
    top_p: float = _field("top_p")
    stop: Stop = _field("stop")
    presence_penalty: float = _field("presence_penalty")
    frequency_penalty: float = _field("frequency_penalty")
    logprobs: bool = Field(False, description="per-token log-probabilities")
    top_logprobs: int = _field("top_logprobs")
    raw: bool = _field("raw")
    json_schema: dict[str, Any] | None = _field(
        "schema",
        validation_alias=AliasChoices("schema", "json_schema"),
        serialization_alias="schema",
    )
    regex: str | None = _field("regex")
    choices: list[str] | None = _field("choices")
    response_format: dict[str, Any] | None = _field("response_format")
    cache: bool = _field("cache")

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send exactly one of 'prompt' and 'messages'")
        return self

    @property
    def input_text(self) -> str:
        """What the prompt-length limit counts: the prompt, or every message's content."""
        if self.prompt is not None:
            return self.prompt
        return "".join(message.content for message in self.messages or ())


class StreamOptions(BaseModel):
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StructuredOutputs(BaseModel):
    """vLLM's `structured_outputs`: one of a JSON Schema, a regex or a list of choices.
    Unlike response_format, the answer keeps keel's <json-output> tags."""

    model_config = ConfigDict(extra="forbid")

    json_schema: dict[str, Any] | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None


class OpenAIRequest(KeelControls):
    """What /v1/completions and /v1/chat/completions share. Sampling defaults are keel's
    (temperature 0), so an omitted field gives the same text as the library."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = None
    temperature: float = _field("temperature")
    top_p: float = _field("top_p")
    seed: int = _field("seed")
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    response_format: ResponseFormat | None = None
    presence_penalty: float = _field("presence_penalty")
    frequency_penalty: float = _field("frequency_penalty")
    structured_outputs: StructuredOutputs | None = None


class CompletionRequest(OpenAIRequest):
    prompt: str
    logprobs: int | None = None  # how many alternatives per token (0: the chosen one only)
    echo: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's calls
    tool_call_id: str | None = None  # a tool result's call


class ChatCompletionRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    max_completion_tokens: int | None = None
