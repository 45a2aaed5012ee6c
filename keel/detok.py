"""Turning token bytes into text that is safe to show as soon as it is produced.

Two hold-backs make a streamed piece final: bytes of a UTF-8 character split across tokens
wait for the rest of the character, and text that could be the start of a stop string waits
until it is known not to be one. So no piece ever contains U+FFFD from a split character,
and no stop string ever leaks into the output.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field


class Utf8Assembler:
    """Incremental UTF-8 decoding; invalid bytes (not merely incomplete) become U+FFFD.

    A character still incomplete when the output ends (e.g. cut by max_new_tokens) is
    dropped rather than shown as U+FFFD: the text only ever contains whole characters.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)


@dataclass
class StopMatcher:
    """Finds the earliest stop string in the text stream, holding back possible prefixes."""

    stops: tuple[str, ...]
    _held: str = field(default="", init=False)

    def feed(self, text: str) -> tuple[str, str | None]:
        """Returns (text safe to emit, the stop string that ended the output or None)."""
        buffer = self._held + text
        if not self.stops:
            return buffer, None
        found = [(buffer.find(stop), stop) for stop in self.stops]
        hits = [(index, stop) for index, stop in found if index >= 0]
        if hits:
            index, stop = min(hits, key=lambda hit: hit[0])
            self._held = ""
            return buffer[:index], stop
        hold = self._prefix_length(buffer)
        self._held = buffer[len(buffer) - hold :]
        return buffer[: len(buffer) - hold], None

    def flush(self) -> str:
        """The held text, once the stream ended without completing a stop string."""
        held, self._held = self._held, ""
        return held

    def _prefix_length(self, buffer: str) -> int:
        """Length of the longest buffer suffix that starts some stop string."""
        longest = 0
        for stop in self.stops:
            for length in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if stop.startswith(buffer[len(buffer) - length :]):
                    longest = length
                    break
        return longest
