"""Batch input: one request per JSONL line (`id`, then `prompt` or `messages`, then any
generation parameter), defaults for every row, and every problem found before the first
row runs, each with its line number and id."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..api import StreamOptions, check_request
from ..errors import KeelError

# what a row may set besides its id and input; include_logprobs has no place in a row's
# output, and a batch job never runs remote models without the caller's explicit say
OPTION_NAMES = frozenset(typing.get_type_hints(StreamOptions)) - {"include_logprobs"}


class BatchInputError(KeelError, ValueError):
    """Rows that cannot run: each problem with its line number and id."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{len(problems)} bad row(s); nothing was generated:\n" + "\n".join(shown) + more
        )
        self.problems = problems


@dataclass(frozen=True)
class BatchRequest:
    index: int  # position in the input: results keep this order
    id: str
    prompt: str | None
    options: dict[str, Any] = field(default_factory=dict)  # messages included
    line: int = 0  # 1-based line in the input file (0: not from a file)


def _row(index: int, line: int, data: Any, defaults: dict[str, Any]) -> BatchRequest:
    if not isinstance(data, dict):
        raise ValueError(f"a row must be a JSON object, got {type(data).__name__}")
    data = dict(data)
    row_id = data.pop("id", None)
    if row_id is None:
        row_id = str(index)
    elif not isinstance(row_id, (str, int)) or isinstance(row_id, bool):
        raise ValueError(f"id must be a string or an integer, got {row_id!r}")
    unknown = sorted(set(data) - OPTION_NAMES - {"prompt"})
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))}")
    prompt = data.pop("prompt", None)
    if (prompt is None) == ("messages" not in data):
        raise ValueError("a row needs exactly one of 'prompt' and 'messages'")
    options = {**defaults, **data}
    if "messages" in data:
        options.pop("prompt", None)
    check_request(prompt, **options)
    return BatchRequest(index, str(row_id), prompt, options, line)


def batch_requests(
    rows: Iterable[Any], defaults: dict[str, Any] | None = None
) -> list[BatchRequest]:
    """Python rows (dicts, or strings taken as prompts) as checked requests."""
    entries = [(0, {"prompt": row} if isinstance(row, str) else row) for row in rows]
    return checked_requests(entries, defaults, [])


def read_requests(
    lines: Iterable[str], defaults: dict[str, Any] | None = None
) -> list[BatchRequest]:
    """JSONL lines as checked requests; blank lines are skipped."""
    entries, problems = [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            entries.append((number, json.loads(text)))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
    return checked_requests(entries, defaults, problems)


def checked_requests(
    entries: list[tuple[int, Any]], defaults: dict[str, Any] | None, problems: list[str]
) -> list[BatchRequest]:
    """Every (line, row) checked (line 0: a row not from a text file, reported by its
    position); all problems reported together, before anything runs."""
    requests = []
    for index, (line, data) in enumerate(entries):
        try:
            requests.append(_row(index, line, data, dict(defaults or {})))
        except (ValueError, TypeError, KeelError) as exc:
            where = f"line {line}" if line else f"row {index}"
            problems.append(f"{where} (id {_id_of(data, index)}): {exc}")
    _check_ids(requests, problems)
    if problems:
        raise BatchInputError(sorted(problems, key=_position))
    return requests


def _position(problem: str) -> int:
    """The line (or row) number a problem starts with, for reporting in file order."""
    return int(problem.split()[1].rstrip(":"))


def _id_of(data: Any, index: int) -> str:
    return str(data.get("id", index)) if isinstance(data, dict) else str(index)


def _check_ids(requests: list[BatchRequest], problems: list[str]) -> None:
    """Ids name rows in the output and in a resumed job, so they must be unique."""
    seen: dict[str, BatchRequest] = {}
    for request in requests:
        if request.id in seen:
            where = f"line {request.line}" if request.line else f"row {request.index}"
            problems.append(f"{where} (id {request.id}): the id is already used")
        seen.setdefault(request.id, request)
