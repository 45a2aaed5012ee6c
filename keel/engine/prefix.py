"""When a prompt may reuse KV that an earlier prefill left in its slot.

Prompts are prefilled in CHUNK-sized pieces aligned at position 0, so a whole leading
chunk shared with the slot's previous prompt holds exactly the KV a cold prefill would
compute, provided llama.cpp's kernels give the same numbers when the chunks after it are
decoded again. That proviso is checked once per model file and build (`PrefixReuse`),
by comparing a warm prefill's logits with a cold one's, and remembered on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..file_memo import remembered
from .context import CHUNK


def reusable_chunks(tokens: Sequence[int], prefilled: Sequence[int]) -> int:
    """Leading whole CHUNKs of `tokens` equal to those of the slot's last prefill.

    Only whole chunks decoded by prefill count (generated tokens were decoded one by
    one, so their numerics differ), and the chunk holding the last prompt token is
    always decoded again because its logits are needed.
    """
    limit = (len(tokens) - 1) // CHUNK
    count = 0
    while count < limit:
        span = slice(count * CHUNK, (count + 1) * CHUNK)
        if list(tokens[span]) != list(prefilled[span]):  # a partial chunk never compares equal
            break
        count += 1
    return count


class PrefixReuse:
    """The verdict for one model and build: None until the first chance to reuse, then
    True (warm == cold, proven) or False for good."""

    def __init__(self, files: Sequence[Path]) -> None:
        self._files = list(files)
        self.verdict: bool | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is not False

    def settle(self, prove: Callable[[], bool]) -> bool:
        """Decide now (once per file versions, across processes) by running `prove`."""
        if self.verdict is None:
            outcome = remembered(
                "prefix reuse proof",
                self._files,
                lambda: "equal" if prove() else "differs",
            )
            self.verdict = outcome == "equal"
        return self.verdict
