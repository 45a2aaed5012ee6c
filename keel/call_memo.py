"""generate()'s fast path: a call repeated with identical arguments goes straight to its
cache record, skipping validation, model resolution and hashing the fingerprint.

It is only an index into the result cache, so it must never answer where the full path
would answer differently: the key holds every argument and the whole settings snapshot
(so no result-relevant setting is listed by hand, remote base URLs included), and a hit
is dropped when a local model's file has changed since (replaced in place, e.g. a new
download). A remote model's identity is all in the key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .cache import Record, ResultCache
from .config import Settings
from .file_memo import FileStamp, file_stamp
from .loaded import ModelIdentity

_LIMIT = 4096  # remembered calls; cleared wholesale when full (the cache itself stays)


@dataclass(frozen=True)
class _Noted:
    key: str  # the result cache key
    path: str | None  # the local model file (a str: os.stat takes it as is); None: remote
    stamp: FileStamp | None


class CallMemo:
    def __init__(self) -> None:
        self._calls: dict[tuple[Any, ...], _Noted] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._calls)

    @staticmethod
    def call_key(
        store: ResultCache, current: Settings, arguments: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """A hashable form of a call under the current settings; None when an argument is
        not hashable (e.g. a schema dict), and the full path is taken."""
        values: Iterable[Any] = arguments.values()
        if any(type(value) is list for value in values):  # stop strings, choices
            values = [tuple(value) if type(value) is list else value for value in values]
        call = (store, current, *values)
        try:
            hash(call)
        except TypeError:
            return None
        return call

    def recall(self, store: ResultCache, call: tuple[Any, ...]) -> Record | None:
        noted = self._calls.get(call)
        if noted is None:
            return None
        try:
            unchanged = noted.path is None or file_stamp(noted.path) == noted.stamp
        except OSError:
            unchanged = False
        if not unchanged:
            with self._lock:
                self._calls.pop(call, None)
            return None
        return store.recent(noted.key)

    def note(self, call: tuple[Any, ...], key: str, model: ModelIdentity | None) -> None:
        """Remember a call's cache key; `model` is the local model (None for a remote one,
        whose identity is all in the key)."""
        noted = _Noted(key, str(model.path), model.stamp) if model else _Noted(key, None, None)
        with self._lock:
            if len(self._calls) >= _LIMIT:
                self._calls.clear()
            self._calls[call] = noted
