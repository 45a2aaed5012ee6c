"""The `<json-output>` tags around structured JSON: finding the JSON between them in a
whole text, or as the text streams in (OpenAI clients expect the bare JSON document)."""

from __future__ import annotations

from enum import Enum

JSON_OPEN, JSON_CLOSE = "<json-output>", "</json-output>"


def json_body(text: str) -> str:
    """The JSON between the tags (after any reasoning preamble)."""
    start = text.find(JSON_OPEN)
    if start < 0 or not text.endswith(JSON_CLOSE):
        raise ValueError(f"output is not wrapped in {JSON_OPEN}...{JSON_CLOSE}")
    return text[start + len(JSON_OPEN) : len(text) - len(JSON_CLOSE)]


class _Where(Enum):
    BEFORE = "before the opening tag"
    INSIDE = "inside the tags"
    AFTER = "after the closing tag"


class JsonTagFilter:
    """Passes on only the text between the tags, as it streams, holding back what could be
    the start of the closing tag."""

    def __init__(self) -> None:
        self._buffer = ""
        self._where = _Where.BEFORE

    def feed(self, text: str) -> str:
        self._buffer += text
        if self._where is _Where.BEFORE:
            start = self._buffer.find(JSON_OPEN)
            if start < 0:
                return ""
            self._buffer = self._buffer[start + len(JSON_OPEN) :]
            self._where = _Where.INSIDE
        if self._where is not _Where.INSIDE:
            return ""
        end = self._buffer.find(JSON_CLOSE)
        if end >= 0:
            out, self._buffer, self._where = self._buffer[:end], "", _Where.AFTER
            return out
        held = next(
            (n for n in range(len(JSON_CLOSE) - 1, 0, -1) if self._buffer.endswith(JSON_CLOSE[:n])),
            0,
        )
        out = self._buffer[: len(self._buffer) - held]
        self._buffer = self._buffer[len(out) :]
        return out
