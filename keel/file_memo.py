"""Values derived from files, computed once per file version and remembered on disk.

A model's sha256 and llama.cpp's CPU feature line are needed for every fingerprint, and
so for every cache lookup; recomputing them (hashing hundreds of MB, importing and
initialising llama.cpp) would make a cache hit from a fresh process slow. Entries are keyed
by resolved path, size and mtime, so a changed file is computed again.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import settings

_memo: dict[str, str] = {}
_lock = threading.Lock()


def _memo_file() -> Path:
    return settings().cache_dir / "file-memo.json"


FileStamp = tuple[int, int]  # (size, mtime_ns): a file replaced in place gets a new one


def file_stamp(path: Path | str) -> FileStamp:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _identity(kind: str, paths: Sequence[Path]) -> str:
    parts = [kind]
    for path in paths:
        name = os.path.abspath(path)
        size, mtime = file_stamp(name)
        parts.append(f"{name}|{size}|{mtime}")
    return "\n".join(parts)


def _read(file: Path) -> dict[str, str]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(file: Path, key: str, value: str) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        memo = _read(file)
        memo[key] = value
        tmp = file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        os.replace(tmp, file)
    except OSError:
        pass  # remembering is an optimisation; the value itself is still correct


def remembered(kind: str, paths: Sequence[Path], compute: Callable[[], str]) -> str:
    """compute() once per (kind, file versions), in this process and across processes."""
    key = _identity(kind, paths)
    with _lock:
        if key in _memo:
            return _memo[key]
    file = _memo_file()
    value = _read(file).get(key)
    if value is None:
        value = compute()
        _write(file, key, value)
    with _lock:
        _memo[key] = value
    return value
