"""A model's sha256, computed once per file version and remembered across processes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..file_memo import remembered


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            sha.update(block)
    return sha.hexdigest()


def model_sha256(path: Path) -> str:
    return remembered("sha256", [path], lambda: _sha256(path))
