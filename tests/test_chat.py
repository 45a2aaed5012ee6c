"""Chat sessions: every turn is generate(messages=history, seed=turn_seed(seed, turn)), so
a session gives the same replies again, in a fresh process, after save/load, streamed or
not, sync or async; a history too long for the context loses whole old turns, with a
warning, never part of a message."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from pydantic import BaseModel

import keel
from keel import ChatSession, KeelWarning, turn_seed
from keel.errors import InvalidParameterError

TURNS = ["Hi! Name a fruit.", "Why that one?", "Now name a colour."]
OPTIONS = {"max_new_tokens": 24, "temperature": 0.7}


def three_turns(session: ChatSession) -> list[str]:
    return [session.send(text) for text in TURNS]


def test_each_turn_is_generate_over_the_history_with_the_turn_seed():
    session = ChatSession(system="You are brief.", seed=5, **OPTIONS)
    replies = three_turns(session)
    assert len(session.history) == 1 + 2 * len(TURNS)
    for turn, reply in enumerate(replies):
        before = session.history[: 2 + 2 * turn]
        assert before[-1] == {"role": "user", "content": TURNS[turn]}
        expected = keel.generate(messages=before, seed=turn_seed(5, turn), **OPTIONS)
        assert reply == expected
    assert len(set(turn_seed(5, t) for t in range(3)) | {turn_seed(6, 0)}) == 4


def test_a_session_equals_itself_again_after_save_load_and_in_a_fresh_process():
    replies = three_turns(ChatSession(seed=9, **OPTIONS))
    assert three_turns(ChatSession(seed=9, **OPTIONS)) == replies
    saved = ChatSession(seed=9, **OPTIONS)
    saved.send(TURNS[0])
    resumed = ChatSession.from_json(saved.to_json())
    assert resumed.history == saved.history and resumed.turn == 1
    assert [resumed.send(text) for text in TURNS[1:]] == replies[1:]
    code = (
        "import json, sys, keel; s = keel.ChatSession(seed=9, **json.loads(sys.argv[1])); "
        "print(json.dumps([s.send(t) for t in json.loads(sys.argv[2])]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(OPTIONS), json.dumps(TURNS)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout) == replies


def test_stream_and_async_equal_send():
    replies = three_turns(ChatSession(seed=3, **OPTIONS))
    streamed = ChatSession(seed=3, **OPTIONS)
    for text, reply in zip(TURNS, replies, strict=True):
        events = list(streamed.stream(text))
        assert "".join(event.text for event in events) == reply
        assert events[-1].finish_reason in ("stop", "length")

    async def both() -> tuple[list[str], list[str]]:
        sent = ChatSession(seed=3, **OPTIONS)
        first = [await sent.asend(text) for text in TURNS]
        streaming = ChatSession(seed=3, **OPTIONS)
        second = []
        for text in TURNS:
            second.append("".join([e.text async for e in streaming.astream(text)]))
        return first, second

    assert asyncio.run(both()) == (replies, replies)
    left = ChatSession(seed=3, **OPTIONS)
    stream = left.stream(TURNS[0])
    next(stream)
    stream.close()  # left early: no turn
    assert left.history == []


def test_a_turn_may_override_options_but_not_what_the_session_decides():
    session = ChatSession(**OPTIONS)
    assert session.send("Pick one.", choices=["tea", "coffee"]) in ("tea", "coffee")
    with pytest.raises(InvalidParameterError, match="seed"):
        session.send("Hi", seed=1)
    with pytest.raises(InvalidParameterError, match="prompt"):
        ChatSession(prompt="Hi")
    with pytest.raises(InvalidParameterError, match="temperature"):
        ChatSession(temperature=-1)

    class Answer(BaseModel):
        word: str

    with pytest.raises(InvalidParameterError, match="JSON Schema"):
        ChatSession(schema=Answer).to_json()
    with pytest.raises(InvalidParameterError, match="not a saved keel chat session"):
        ChatSession.from_json(json.dumps({"history": []}))


def test_a_long_history_drops_whole_old_turns_with_a_warning():
    long_text = "The quick brown fox jumps over the lazy dog. " * 80  # about 800 tokens
    history = [{"role": "system", "content": "Be brief."}]
    for number in range(5):
        history += [
            {"role": "user", "content": f"Story {number}: {long_text}"},
            {"role": "assistant", "content": "Noted."},
        ]
    session = ChatSession(history=history, max_new_tokens=16)
    with pytest.warns(KeelWarning, match=r"left out the 3 oldest of 6 turns"):
        reply = session.send("Summarise.")
    window = history[:1] + history[7:] + [{"role": "user", "content": "Summarise."}]
    assert reply == keel.generate(messages=window, max_new_tokens=16, seed=turn_seed(42, 5))
    assert session.history[:-2] == history  # the history keeps every turn
    too_long = ChatSession(max_new_tokens=16)
    with pytest.raises(InvalidParameterError, match="does not fit the context"):
        too_long.send(long_text * 4)
