"""Progress of a batch job on stderr: a rich bar on a terminal (rows, tokens/s, ETA,
errors, cache hits), a plain line every few seconds otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .run import BatchResult

PLAIN_EVERY_SECONDS = 5.0


@contextmanager
def progress_reporter(total: int) -> Iterator[Callable[[BatchResult], None]]:
    started = time.perf_counter()
    counts = {"rows": 0, "tokens": 0, "errors": 0, "cached": 0}

    def describe() -> str:
        elapsed = max(time.perf_counter() - started, 1e-9)
        return (
            f"{counts['tokens'] / elapsed:.1f} tok/s, {counts['errors']} errors, "
            f"{counts['cached']} cache hits"
        )

    def count(result: BatchResult) -> None:
        counts["rows"] += 1
        counts["tokens"] += result.generation_tokens
        counts["errors"] += result.error is not None
        counts["cached"] += result.cached

    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.description}"), transient=False,
        ) as bar:  # fmt: skip
            task = bar.add_task("", total=total)

            def on_terminal(result: BatchResult) -> None:
                count(result)
                bar.update(task, advance=1, description=describe())

            yield on_terminal
        return
    last = started

    def on_log(result: BatchResult) -> None:
        nonlocal last
        count(result)
        now = time.perf_counter()
        if now - last >= PLAIN_EVERY_SECONDS or counts["rows"] == total:
            last = now
            print(f"batch: {counts['rows']}/{total} rows, {describe()}", file=sys.stderr)

    yield on_log
