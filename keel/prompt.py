"""From a request's input (a prompt or a conversation) to the prompt tokens a generation
starts from, fitted into the context."""

from __future__ import annotations

from dataclasses import dataclass

from .engine.llama import LlamaEngine
from .errors import warn_caller
from .params import GenerationParams


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    truncated: bool


def fit_context(
    tokens: list[int], n_ctx: int, max_new_tokens: int, bos: int
) -> tuple[list[int], bool]:
    """Keep the prompt's tail so that min(max_new_tokens, n_ctx // 2) tokens still fit.

    The leading BOS survives truncation because models condition on it.
    """
    budget = n_ctx - min(max_new_tokens, n_ctx // 2)
    if len(tokens) <= budget:
        return tokens, False
    head = [bos] if tokens[0] == bos else []
    return head + tokens[len(tokens) - (budget - len(head)) :], True


def prepare_prompt(engine: LlamaEngine, params: GenerationParams) -> Prompt:
    """Template, tokenize and fit the prompt, in the caller's thread (so a truncation
    warning points at the caller; tokenizing only reads the vocabulary)."""
    vocab = engine.vocab
    tokens = vocab.prompt_tokens(params.prompt, raw=params.raw, messages=params.messages)
    tokens, truncated = fit_context(tokens, engine.n_ctx, params.max_new_tokens, vocab.bos)
    if truncated:
        warn_caller(
            f"prompt truncated to its last {len(tokens)} tokens to fit n_ctx={engine.n_ctx}"
        )
    return Prompt(tokens, truncated)
