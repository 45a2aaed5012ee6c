"""When a prompt may reuse KV that an earlier prefill or generation left in its slot.

Two rules, the stronger first:
- Any position. Where a model's kernels compute each token's row the same whatever else
  of its sequence shares the batch (SmolLM2 does; Gemma-3's repacked Q4_K kernels do not),
  a prompt can go on from the longest prefix it shares with the slot's last prompt. The
  rest is decoded in the same aligned chunks as a cold prefill, the first one cut short,
  and never as a lone token where the cold prefill has others beside it (llama.cpp takes
  another attention path for one row). Generated tokens were decoded alone, so they never
  count. A load-time check proves the rule per model (reuse_check.py).
- Whole chunks. Otherwise prompts are prefilled in CHUNK-sized pieces aligned at position
  0, so a whole leading chunk shared with the slot's previous prompt holds exactly the KV
  a cold prefill would compute, provided the chunks after it decode the same again. That
  proviso is checked the first time it matters, by comparing a warm prefill's logits with
  a cold one's.
Both verdicts are remembered on disk per model file and build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..file_memo import remembered
from .context import CHUNK


def continuation_start(tokens: Sequence[int], prefilled: Sequence[int]) -> int:
    """Where a prefill of `tokens` may go on from the slot's last prefilled prompt under
    the any-position rule (0: nowhere). The last token is always decoded (its logits are
    needed), and the first decoded chunk is never one token cut from a longer one."""
    limit = min(len(tokens) - 1, len(prefilled))
    first = 0
    while first < limit and tokens[first] == prefilled[first]:
        first += 1
    chunk_end = min(len(tokens), (first // CHUNK + 1) * CHUNK)
    if first % CHUNK and chunk_end - first == 1:
        first -= 1
    return first


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
    """The verdicts for one model and build. `any_position` is set at load time by
    reuse_check.py; `verdict` (whole chunks) is None until the first chance to reuse, then
    True (warm == cold, proven) or False for good."""

    def __init__(self, files: Sequence[Path]) -> None:
        self._files = list(files)
        self.any_position = False
        self.verdict: bool | None = None

    def report(self) -> str:
        """One word for operators: what this model may reuse."""
        if self.any_position:
            return "any position"
        return {None: "whole chunks (unproven yet)", True: "whole chunks"}.get(self.verdict, "none")

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
