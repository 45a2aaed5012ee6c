"""A batch job's files: the output in input order, written once at the end (temp file +
rename), an append-only log of finished rows while it runs, and a small record of which
job made them (a fingerprint of the input, the defaults and the models). A job killed at
any point resumes from its log and ends with the same file; a different job refuses to
write over it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import LOCATION_KEYS
from ..engine.library import build_info
from ..errors import KeelError
from ..events import KEEL_VERSION
from ..loaded import identify
from ..models import resolve_model
from ..remote import is_remote
from .engines import Engine, run_rows
from .requests import BatchRequest
from .run import BatchResult


class BatchJobError(KeelError):
    """The output belongs to another job, or a row failed under fail_fast."""


@dataclass(frozen=True)
class JobFiles:
    output: Path

    @property
    def log(self) -> Path:
        return self.output.with_name(self.output.name + ".partial")

    @property
    def record(self) -> Path:
        return self.output.with_name(self.output.name + ".keel-job.json")


@dataclass
class JobSummary:
    rows: int
    resumed: int = 0  # rows found finished in the log of an earlier run
    generated: int = 0
    errors: int = 0
    cached: int = 0
    already_complete: bool = False


def job_fingerprint(
    input_bytes: bytes, defaults: dict[str, Any], requests: list[BatchRequest]
) -> str:
    """What decides the output file: keel, the llama.cpp build, the input, the defaults
    and every model's file hash."""
    models = {}
    for request in requests:
        location = {key: request.options.get(key) for key in LOCATION_KEYS}
        name = json.dumps(location, sort_keys=True)
        if name not in models:
            models[name] = (
                str(location["model"])
                if is_remote(location["model"])
                else identify(resolve_model(**location)).sha256
            )
    identity = {
        "keel": KEEL_VERSION,
        "build": build_info(),
        "input": hashlib.sha256(input_bytes).hexdigest(),
        "defaults": defaults,
        "models": models,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[
        :24
    ]


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _read_record(files: JobFiles) -> dict[str, Any] | None:
    try:
        record = json.loads(files.record.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _claim(files: JobFiles, job: str, overwrite: bool) -> dict[str, Any] | None:
    """The job's record if these files are this job's; refuse another job's files."""
    record = _read_record(files)
    if overwrite:
        for path in (files.output, files.log, files.record):
            path.unlink(missing_ok=True)
        return None
    if record is not None and record.get("job") != job:
        raise BatchJobError(
            f"{files.output} was written by another batch job (a different input, defaults "
            "or model); pass --overwrite (overwrite=True) to replace it, or choose another path"
        )
    if record is None and (files.output.exists() or files.log.exists()):
        raise BatchJobError(
            f"{files.output} exists and was not written by keel batch; pass --overwrite "
            "(overwrite=True) to replace it, or choose another path"
        )
    return record


def _finished_rows(files: JobFiles, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Rows in the log of an earlier run; a line cut short by a crash is dropped (and cut
    from the file, so appending goes on from a whole line)."""
    finished: dict[str, dict[str, Any]] = {}
    if not files.log.exists():
        return finished
    data = files.log.read_bytes()
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            row = json.loads(line)
        except ValueError:
            break
        if isinstance(row, dict) and row.get("id") in ids:
            finished[row["id"]] = row
        good += len(line)
    if good < len(data):
        with open(files.log, "r+b") as file:
            file.truncate(good)
    return finished


def run_job(
    requests: list[BatchRequest],
    output: Path,
    job: str,
    *,
    engine: Engine = "local",
    concurrency: int | None = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    on_result: Callable[[BatchResult], None] | None = None,
) -> JobSummary:
    """Run the rows the output does not have yet, then write it in input order."""
    files = JobFiles(output)
    record = _claim(files, job, overwrite)
    summary = JobSummary(rows=len(requests))
    if record is not None and record.get("complete") and output.exists():
        summary.already_complete = True
        return summary
    _write_atomically(
        files.record, json.dumps({"job": job, "rows": len(requests), "complete": False})
    )
    finished = _finished_rows(files, {request.id for request in requests})
    summary.resumed = len(finished)
    remaining = [request for request in requests if request.id not in finished]
    with open(files.log, "a") as log:
        for result in run_rows(remaining, engine, concurrency):
            row = result.to_json()
            log.write(json.dumps(row) + "\n")
            log.flush()
            os.fsync(log.fileno())
            finished[result.id] = row
            summary.generated += 1
            summary.errors += result.error is not None
            summary.cached += result.cached
            if on_result is not None:
                on_result(result)
            if fail_fast and result.error is not None:
                raise BatchJobError(f"row id {result.id} failed: {result.error} (rerun resumes)")
    ordered = "".join(json.dumps(finished[request.id]) + "\n" for request in requests)
    _write_atomically(output, ordered)
    _write_atomically(
        files.record, json.dumps({"job": job, "rows": len(requests), "complete": True})
    )
    files.log.unlink(missing_ok=True)
    return summary
