"""Text <-> tokens for one model: tokenizing, token bytes, end tokens, and the prompt a
request becomes (raw text, or the model's chat template)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

from ..errors import GenerationError, InvalidParameterError
from .chat import render_chat
from .context import LlamaModel
from .library import llama

Message = tuple[str, str]  # (role, content)


class Vocabulary:
    def __init__(self, model: LlamaModel) -> None:
        lib = self._lib = llama()
        self._model = model
        self.handle = model.vocab  # the C vocabulary, for llguidance
        self.n_vocab: int = lib.llama_vocab_n_tokens(self.handle)
        self.bos: int = lib.llama_vocab_bos(self.handle)
        self.eos: int = lib.llama_vocab_eos(self.handle)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.handle))
        self.chat_template = model.chat_template
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._eog_ids: list[int] | None = None

    @property
    def path(self) -> Path:
        return self._model.path

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (ctypes.c_int32 * capacity)()
        count = self._lib.llama_tokenize(
            self.handle, data, len(data), buffer, capacity, add_bos, parse_special
        )
        if count < 0:
            raise GenerationError(f"tokenizer needed {-count} slots, had {capacity}")
        return list(buffer[:count])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (special tokens render as nothing). Memoised."""
        cached = self._pieces.get(token)
        if cached is None:
            buffer = ctypes.create_string_buffer(64)
            size = self._lib.llama_token_to_piece(self.handle, token, buffer, 64, 0, False)
            if size < 0:
                buffer = ctypes.create_string_buffer(-size)
                size = self._lib.llama_token_to_piece(self.handle, token, buffer, -size, 0, False)
            cached = self._pieces[token] = buffer.raw[:size]
        return cached

    def token_text(self, token: int) -> str:
        return self.piece(token).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        flag = self._eog.get(token)
        if flag is None:
            flag = self._eog[token] = bool(self._lib.llama_vocab_is_eog(self.handle, token))
        return flag

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token id (one scan of the vocabulary, then remembered)."""
        if self._eog_ids is None:
            is_eog = self._lib.llama_vocab_is_eog
            self._eog_ids = [t for t in range(self.n_vocab) if is_eog(self.handle, t)]
        return self._eog_ids

    def special_text(self, token: int) -> str:
        """A special token's written form (e.g. "<|im_start|>"); "" if the model has none."""
        if token < 0:
            return ""
        buffer = ctypes.create_string_buffer(256)
        size = self._lib.llama_token_to_piece(self.handle, token, buffer, 256, 0, True)
        return buffer.raw[: max(size, 0)].decode("utf-8", "replace")

    def chat_text(self, messages: Sequence[Message]) -> str:
        """The prompt text for a conversation: the model's chat template with the assistant's
        turn opened. A model without a template (a base model) takes one user message as
        plain text, like a prompt; anything more has no faithful rendering."""
        if self.chat_template:
            return render_chat(
                self.chat_template,
                [{"role": role, "content": content} for role, content in messages],
                bos_token=self.special_text(self.bos),
                eos_token=self.special_text(self.eos),
            )
        if len(messages) == 1 and messages[0][0] == "user":
            return messages[0][1]
        raise InvalidParameterError(
            f"{self.path.name} has no chat template, so a chat takes exactly one user "
            "message; send raw text as a completion instead"
        )

    def prompt_tokens(
        self, prompt: str, *, raw: bool, messages: Sequence[Message] = ()
    ) -> list[int]:
        """Tokens for a prompt (chat-templated as one user message for instruct models, as
        is for base models or raw=True) or for a conversation.

        An empty prompt still starts from BOS so generation has something to condition on.
        """
        if messages:
            text = self.chat_text(messages)
        else:
            text = prompt if raw else self.chat_text([("user", prompt)])
        tokens = self.tokenize(text, add_bos=self.add_bos, parse_special=True)
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos:
            tokens = tokens[1:]  # the template wrote BOS and the tokenizer added another
        if not tokens:
            if self.bos < 0:
                raise InvalidParameterError(
                    f"{self.path.name} has no BOS token, so an empty raw prompt gives it "
                    "nothing to start from; pass some text"
                )
            tokens = [self.bos]
        return tokens
