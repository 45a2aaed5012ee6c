"""A model's sha256, computed once per file version and remembered across processes.

Hashing a GGUF takes a noticeable fraction of a second per 100 MB; a fingerprint (and a
later cache lookup) must not pay that on every start, and must not need to load weights.
The memo is keyed by resolved path, size and mtime, so an edited file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from ..config import settings

_memo: dict[str, str] = {}
_lock = threading.Lock()


def _memo_file() -> Path:
    return settings().cache_dir / "model-digests.json"


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _read_memo(file: Path) -> dict[str, str]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_memo(file: Path, key: str, digest: str) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        memo = _read_memo(file)
        memo[key] = digest
        tmp = file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        os.replace(tmp, file)
    except OSError:
        pass  # remembering is an optimisation; the digest itself is still correct


def model_sha256(path: Path) -> str:
    key = _key(path)
    with _lock:
        if key in _memo:
            return _memo[key]
    file = _memo_file()
    digest = _read_memo(file).get(key)
    if digest is None:
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(4 << 20):
                sha.update(block)
        digest = sha.hexdigest()
        _write_memo(file, key, digest)
    with _lock:
        _memo[key] = digest
    return digest
