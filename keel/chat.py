"""Chat sessions: a conversation kept as messages, each turn generated from the whole
history with the model's chat template, deterministic per turn.

Every turn is `generate(messages=window, seed=turn_seed(seed, turn), **options)`, so a
session replayed from its JSON, or rebuilt in a new process, gives the same replies. The
window is the history, minus the oldest whole turns once it no longer fits the context
(with a warning): never a message cut in the middle.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from .aio import astream_generate
from .api import LOCATION_KEYS, check_request, generate, stream_generate
from .errors import InvalidParameterError, warn_caller
from .events import COMPLETED, GenerationResponse, ToolCall
from .loaded import identify, load
from .models import resolve_model
from .params import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SEED, MAX_SEED
from .remote import is_remote
from .structured import Tool, plain_messages, tools_from, with_tools_prompt

SESSION_FORMAT = "keel.chat/1"
# options a session decides itself, per turn
_OWN = {"prompt", "messages", "raw", "seed", "return_logprobs", "include_logprobs"}
MAX_TOOL_ROUNDS = 8
# an upper bound on the tokens a chat template adds per message and around them all; the
# window is counted exactly only when the history might not fit under this bound
_TEMPLATE_TOKENS_PER_MESSAGE = 32
_TEMPLATE_TOKENS = 256

Message = dict[str, Any]


def turn_seed(seed: int, turn: int, step: int = 0) -> int:
    """The seed of turn `turn` (0 = the first reply): the first 4 bytes of
    sha256("keel-chat:{seed}:{turn}"), so sessions with nearby seeds share no turn seeds.
    Step n > 0 of a tool loop (the reply after the n-th round of tool results) hashes
    "keel-chat:{seed}:{turn}:{n}"."""
    name = f"keel-chat:{seed}:{turn}" + (f":{step}" if step else "")
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") % (MAX_SEED + 1)


def call_tool(tools: Sequence[Tool], call: ToolCall) -> Any:
    """Run the Python function the model called, with its validated arguments; what it
    returns (awaitable, for an async function)."""
    tool = next((tool for tool in tools if tool.name == call.name), None)
    if tool is None or tool.function is None:
        raise InvalidParameterError(
            f"run_tools=True needs Python functions; {call.name!r} is not one"
        )
    arguments = tool.adapter.model_validate_json(call.arguments)
    return tool.function(
        **{name: getattr(arguments, name) for name in type(arguments).model_fields}
    )


def tool_message(call: ToolCall, result: Any) -> Message:
    """A tool's result as the message the model reads (JSON unless it is text)."""
    content = result if isinstance(result, str) else json.dumps(result, default=str)
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}


def _turns(messages: Sequence[Message]) -> tuple[list[Message], list[list[Message]]]:
    """(leading system messages, turns): a turn starts at a user message and holds what
    follows it up to the next one."""
    head = 0
    while head < len(messages) and messages[head]["role"] in ("system", "developer"):
        head += 1
    turns: list[list[Message]] = []
    for message in messages[head:]:
        if message["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return list(messages[:head]), turns


def _calls_message(calls: Sequence[ToolCall]) -> Message:
    """The assistant message that made these calls, in OpenAI's shape."""
    return {"role": "assistant", "content": None, "tool_calls": [c.to_dict() for c in calls]}


class ChatSession:
    """A conversation with one model. `send(text)` returns the reply and adds both to
    `history`; `stream(text)` yields the events of the reply (the turn is added when the
    stream ends normally). `seed` is the session's: turn n uses turn_seed(seed, n).
    Every other keyword is a generation option for every turn (a turn may override them)."""

    def __init__(
        self,
        model: str | None = None,
        system: str | None = None,
        *,
        seed: int = DEFAULT_SEED,
        history: Sequence[Message] | None = None,
        **options: Any,
    ) -> None:
        taken = sorted(set(options) & _OWN)
        if taken:
            raise InvalidParameterError(
                f"ChatSession decides {', '.join(taken)} itself; pass text to send()"
            )
        self.model = model
        self.system = system
        self.seed = seed
        self.options = options
        self.history: list[Message] = [dict(message) for message in history or ()]
        if system is not None and not self.history:
            self.history.append({"role": "system", "content": system})
        check_request(None, messages=self.history or [{"role": "user", "content": ""}],
                      **self._location(), seed=seed, **options)  # fmt: skip

    def _location(self) -> dict[str, Any]:
        return {"model": self.model} if self.model is not None else {}

    @property
    def turn(self) -> int:
        """How many replies the session has had (the next turn's index)."""
        return sum(message["role"] == "user" for message in self.history)

    def _request(
        self, text: str, overrides: dict[str, Any], after: Sequence[Message] = (), step: int = 0
    ) -> dict[str, Any]:
        """The generate() arguments of a reply to `text`, with `after` (a tool loop's
        calls and results so far) following it."""
        if not isinstance(text, str):
            raise InvalidParameterError(f"send() takes the user's text, got {text!r}")
        taken = sorted(set(overrides) & _OWN)
        if taken:
            raise InvalidParameterError(f"a turn cannot set {', '.join(taken)}")
        options = {**self._location(), **self.options, **overrides}
        messages = [*self.history, {"role": "user", "content": text}, *after]
        request = {**options, "messages": self._window(messages, options)}
        temperature = options.get("temperature", 0)
        if not (isinstance(temperature, (int, float)) and temperature == 0):
            request["seed"] = turn_seed(self.seed, self.turn, step)  # greedy needs none
        return request

    def _window(self, messages: list[Message], options: dict[str, Any]) -> list[Message]:
        """The history that fits the context: the oldest whole turns after the system
        messages are left out until it does (a remote model sees everything)."""
        location = {key: options.get(key) for key in LOCATION_KEYS}
        if is_remote(location["model"]):
            return messages
        max_new = options.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
        size = (
            sum(
                len(json.dumps(m, ensure_ascii=False).encode()) + _TEMPLATE_TOKENS_PER_MESSAGE
                for m in messages
            )
            + len(json.dumps(options.get("tools"), default=repr).encode()) * 2
        )
        identity = identify(resolve_model(**location))
        context = identity.context.n_ctx
        budget = context - min(max_new, context // 2)
        if size + _TEMPLATE_TOKENS <= budget:
            return messages  # fits whatever the tokenizer does: no need to load the model
        vocab = load(identity).engine.vocab

        tools = options.get("tools")
        described = tools_from(tools) if tools and options.get("tool_choice") != "none" else ()

        def tokens(window: list[Message]) -> int:
            shown = plain_messages(with_tools_prompt(window, described) if described else window)
            pairs = [(m["role"], m["content"]) for m in shown]
            return len(vocab.prompt_tokens("", raw=False, messages=pairs))

        system, turns = _turns(messages)
        dropped = 0
        while tokens(system + [m for turn in turns[dropped:] for m in turn]) > budget:
            if dropped == len(turns) - 1:
                raise InvalidParameterError(
                    f"the last message alone does not fit the context ({context} tokens, "
                    f"{min(max_new, context // 2)} kept for the reply); shorten it or lower "
                    "max_new_tokens"
                )
            dropped += 1
        if dropped:
            warn_caller(
                f"ChatSession: left out the {dropped} oldest of {len(turns)} turns to fit "
                f"n_ctx={context} (history keeps them)"
            )
        return system + [m for turn in turns[dropped:] for m in turn]

    def _add(self, text: str, reply: str, after: Sequence[Message] = ()) -> None:
        self.history += [
            {"role": "user", "content": text},
            *after,
            {"role": "assistant", "content": reply},
        ]

    def _finish(self, text: str, reply: str, calls: Sequence[ToolCall]) -> None:
        """A streamed turn joins the history: its text, or the calls it made."""
        if not calls:
            return self._add(text, reply)
        self.history += [{"role": "user", "content": text}, _calls_message(calls)]
        return None

    def send(
        self,
        text: str,
        *,
        run_tools: bool = False,
        max_tool_rounds: int = MAX_TOOL_ROUNDS,
        **overrides: Any,
    ) -> Any:
        """The model's reply to `text`: its text, or (with tools) the list of ToolCall it
        made. With run_tools=True the calls to Python functions are run and their results
        fed back until the model answers in text (after max_tool_rounds rounds it is asked
        for text alone); every call and result joins the history."""
        return self._turn(text, run_tools, max_tool_rounds, overrides, lambda result: result)

    def _turn(
        self,
        text: str,
        run_tools: bool,
        max_tool_rounds: int,
        overrides: dict[str, Any],
        settle: Callable[[Any], Any],
    ) -> Any:
        """One turn, for send() and asend() alike; `settle` turns what a tool function
        returned into its result (asend awaits an async function's on the caller's loop)."""
        after: list[Message] = []
        for step in range(max_tool_rounds + 1):
            if step == 1:  # tool_choice is for the turn's first reply; then the model decides
                overrides = {**overrides, "tool_choice": "auto"}
            if step == max_tool_rounds:
                overrides = {**overrides, "tool_choice": "none"}
            reply = generate(None, **self._request(text, overrides, after, step))
            if isinstance(reply, str):
                self._add(text, reply, after)
                return reply
            if not run_tools:  # the caller runs the calls (after is empty here)
                self._finish(text, "", reply)
                return reply
            tools = tools_from({**self.options, **overrides}["tools"])
            after.append(_calls_message(reply))
            after += [tool_message(call, settle(call_tool(tools, call))) for call in reply]
        raise AssertionError("unreachable: the last round asks for text")

    def stream(self, text: str, **overrides: Any) -> Iterator[GenerationResponse]:
        """The reply's events; the turn joins the history once the last event (with a
        normal finish_reason) has been read. A stream left early leaves no turn."""
        pieces: list[str] = []
        calls: list[ToolCall] = []
        for event in stream_generate(None, **self._request(text, overrides)):
            pieces.append(event.text)
            calls += event.tool_calls
            if event.finish_reason in COMPLETED:
                self._finish(text, "".join(pieces), calls)
            yield event

    async def asend(
        self,
        text: str,
        *,
        run_tools: bool = False,
        max_tool_rounds: int = MAX_TOOL_ROUNDS,
        **overrides: Any,
    ) -> Any:
        """send() without blocking the event loop; async tool functions are awaited."""
        loop = asyncio.get_running_loop()

        def settle(result: Any) -> Any:
            if not inspect.isawaitable(result):
                return result

            async def awaited() -> Any:
                return await result

            return asyncio.run_coroutine_threadsafe(awaited(), loop).result()

        return await asyncio.to_thread(
            self._turn, text, run_tools, max_tool_rounds, overrides, settle
        )

    async def astream(self, text: str, **overrides: Any) -> AsyncIterator[GenerationResponse]:
        """stream() as an async iterator."""
        pieces: list[str] = []
        calls: list[ToolCall] = []
        async for event in astream_generate(None, **self._request(text, overrides)):
            pieces.append(event.text)
            calls += event.tool_calls
            if event.finish_reason in COMPLETED:
                self._finish(text, "".join(pieces), calls)
            yield event

    def to_json(self) -> str:
        """The session as JSON: model, system, seed, options and history; from_json()
        resumes it exactly."""
        data = {
            "format": SESSION_FORMAT,
            "model": self.model,
            "system": self.system,
            "seed": self.seed,
            "options": self.options,
            "history": self.history,
        }
        try:
            return json.dumps(data, ensure_ascii=False)
        except TypeError as exc:
            raise InvalidParameterError(
                f"this session's options cannot be saved as JSON ({exc}); a schema given as "
                "a Python type can be saved as its JSON Schema"
            ) from None

    @classmethod
    def from_json(cls, text: str) -> ChatSession:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise InvalidParameterError(f"not a saved keel chat session ({SESSION_FORMAT})")
        return cls(
            data["model"],
            data["system"],
            seed=data["seed"],
            history=data["history"],
            **data["options"],
        )
