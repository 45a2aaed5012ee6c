"""A batch job's input file, by its suffix: JSONL (one JSON object a line), CSV (a header
row of parameter names; an empty cell leaves the parameter unset) or Parquet (pyarrow,
which the ray extra brings). Problems carry the line (JSONL, CSV) or row (Parquet)."""

from __future__ import annotations

import csv
import io
import json
import typing
from pathlib import Path
from typing import Any

from ..api import StreamOptions
from ..errors import MissingExtraError
from .requests import BatchRequest, checked_requests, read_requests

# parameters a CSV cell gives as text; every other cell is JSON (a number, true, a list...)
_TEXT_PARAMETERS = {"id", "prompt"} | {
    name
    for name, hint in typing.get_type_hints(StreamOptions).items()
    if hint is str or hint == str | None
}
# parameters that take text or a JSON list: a cell that is not JSON is their text
_TEXT_OR_JSON = {"stop"}


def read_input(path: Path, defaults: dict[str, Any]) -> tuple[bytes, list[BatchRequest]]:
    """The file's bytes (the job fingerprint hashes them) and its checked requests."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return data, _csv_requests(data.decode("utf-8-sig"), defaults)
    if suffix == ".parquet":
        return data, _parquet_requests(data, defaults)
    return data, read_requests(data.decode("utf-8").splitlines(), defaults)


def _cell(name: str, text: str) -> Any:
    if name in _TEXT_PARAMETERS:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if name in _TEXT_OR_JSON:
            return text
        raise ValueError(
            f"column {name!r}: {text!r} is not JSON (a number, true, a list...)"
        ) from None


def _csv_requests(text: str, defaults: dict[str, Any]) -> list[BatchRequest]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    entries: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"line {line}: not CSV ({exc})")
            break
        try:
            cells = {name: _cell(name, value) for name, value in row.items() if value}
        except ValueError as exc:
            problems.append(f"line {line} (id {row.get('id') or len(entries)}): {exc}")
            continue
        entries.append((line, cells))
    return checked_requests(entries, defaults, problems)


def _parquet_requests(data: bytes, defaults: dict[str, Any]) -> list[BatchRequest]:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtraError("Parquet input", "ray") from exc
    rows = pq.read_table(pa.BufferReader(data)).to_pylist()
    entries = [
        (0, {name: value for name, value in row.items() if value is not None}) for row in rows
    ]
    return checked_requests(entries, defaults, [])
