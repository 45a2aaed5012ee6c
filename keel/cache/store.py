"""Persistent result cache: SQLite (WAL) shared by processes, with an in-memory front.

Keys cover everything that decides an output (the fingerprint: model sha256, engine build,
context and every sampling parameter; plus the prompt), so a hit is exactly what a miss
would produce. Reads never write: hit counts and access times are batched and flushed
later. The cache is an optimisation only: any SQLite trouble is logged as a warning and
generation goes on; a corrupt file is moved aside and a fresh one created.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from ..config import DEFAULT_CACHE_MAX_BYTES, Settings, settings
from ..errors import warn_caller
from ..events import Fingerprint
from .record import Record

T = TypeVar("T")

FILENAME = "results.sqlite3"
_FLUSH_EVERY = 64  # pending hit updates before they are written
_HALF_LIFE_HOURS = 24.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    accessed REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    directory: Path | None = None  # None: keel's cache dir (KEEL_CACHE_DIR or the user cache)
    max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    front_entries: int = 1024


_override: CacheConfig | None = None
_override_version = 0  # bumped by configure_cache so result_cache() notices


def _from_settings(current: Settings) -> CacheConfig:
    return CacheConfig(enabled=current.cache_enabled, max_bytes=current.cache_max_bytes)


def cache_config() -> CacheConfig:
    """The active configuration: configure_cache() if called, else the environment
    (KEEL_CACHE=0 disables, KEEL_CACHE_MAX_MB bounds the size)."""
    if _override is not None:
        return _override
    return _from_settings(settings())


def configure_cache(**changes: Any) -> CacheConfig:
    """Override cache settings in this process, e.g. configure_cache(max_bytes=64 << 20);
    configure_cache(reset=True) goes back to the environment."""
    global _override, _override_version
    _override_version += 1
    if changes.pop("reset", False):
        _override = None
        return cache_config()
    if changes.get("directory") is not None:
        changes["directory"] = Path(changes["directory"]).expanduser()
    _override = replace(cache_config(), **changes)
    return _override


def cache_key(fingerprint: Fingerprint, prompt: str) -> str:
    canonical = json.dumps(fingerprint.details, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{canonical}\x00{prompt}".encode()).hexdigest()


def _frecency(hits: int, accessed: float, now: float) -> float:
    """Uses weigh more, and count for half as much every _HALF_LIFE_HOURS since last use."""
    return float((hits + 1) * 0.5 ** ((now - accessed) / (3600.0 * _HALF_LIFE_HOURS)))


_BUSY_ATTEMPTS = 6  # about 0.6 s of retries beyond SQLite's own 30 s busy timeout


def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    # OperationalError covers locked/busy/unopenable: transient or not ours to move aside.
    return not isinstance(exc, sqlite3.OperationalError)


class ResultCache:
    def __init__(self, path: Path, config: CacheConfig) -> None:
        self.path = path
        self.config = config
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._front: OrderedDict[str, Record] = OrderedDict()
        self._pending: dict[str, list[float]] = {}  # key -> [hits, last access]
        self._hits = self._misses = 0

    # -- connection and failure handling ----------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Open once per process. The schema and WAL mode are set up only when the tables
        are missing (WAL is a property of the file), so the read path stays cheap."""
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA synchronous=NORMAL")
            ready = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'counters'"
            ).fetchone()
            if not ready:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _move_aside(self, exc: Exception) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, f"{self.path}.corrupt-{stamp}{suffix}")
        warn_caller(
            f"keel's result cache {self.path} was unreadable ({exc}); moved it aside and "
            "started a fresh one"
        )

    def _run(self, operation: Callable[[sqlite3.Connection], T], default: T) -> T:
        """Run operation(db); on failure warn and return default, never raise. A busy
        database is tried again: SQLite answers some lock conflicts (two processes setting
        up a new file, a stale WAL snapshot) at once, without waiting out the timeout."""
        with self._lock:
            moved_aside = False
            for attempt in range(_BUSY_ATTEMPTS):
                try:
                    return operation(self._connect())
                except sqlite3.DatabaseError as exc:
                    self._roll_back()
                    if _is_busy(exc) and attempt < _BUSY_ATTEMPTS - 1:
                        time.sleep(0.02 * 2**attempt)
                        continue
                    if not moved_aside and _is_corruption(exc):
                        self._move_aside(exc)
                        moved_aside = True
                        continue
                    return self._failed(exc, default)
                except OSError as exc:
                    return self._failed(exc, default)
            return default

    def _roll_back(self) -> None:
        """End a transaction a failed operation left open, so the next one can begin."""
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.DatabaseError):
                self._db.execute("ROLLBACK")

    def _failed(self, exc: Exception, default: T) -> T:
        global _errors
        _errors += 1
        warn_caller(f"keel's result cache is unavailable: {exc}")
        return default

    # -- lookups ----------------------------------------------------------------------

    def _remember(self, key: str, record: Record) -> None:
        self._front[key] = record
        self._front.move_to_end(key)
        while len(self._front) > self.config.front_entries:
            self._front.popitem(last=False)

    def _touch(self, key: str) -> None:
        with self._lock:
            pending = self._pending.setdefault(key, [0, 0.0])
            pending[0] += 1
            pending[1] = time.time()
            self._hits += 1
            if len(self._pending) >= _FLUSH_EVERY:
                self.flush()

    def recent(self, key: str) -> Record | None:
        """Look in the in-memory front only: a hit counts, a miss does not (the caller
        goes on to get())."""
        record = self._front.get(key)
        if record is not None:
            self._touch(key)
        return record

    def get(self, key: str) -> Record | None:
        with self._lock:
            record = self._front.get(key)
            if record is None:
                row = self._run(
                    lambda db: db.execute(
                        "SELECT value FROM entries WHERE key = ?", (key,)
                    ).fetchone(),
                    None,
                )
                if row is None:
                    self._misses += 1
                    return None
                try:
                    record = Record.from_json(row[0])
                except (ValueError, KeyError, TypeError):
                    self._misses += 1
                    return None  # an entry from an older format: regenerate and overwrite
            self._remember(key, record)
            self._touch(key)
            return record

    # -- writes -----------------------------------------------------------------------

    def put(self, key: str, record: Record) -> None:
        value = record.to_json()
        now = time.time()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO entries (key, value, size, created, accessed, hits) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                (key, value, len(value) + len(key), now, now),
            )
            self._evict(db, self.config.max_bytes)

        with self._lock:
            self._remember(key, record)
            self._run(write, None)

    def _evict(self, db: sqlite3.Connection, max_bytes: int) -> int:
        """Drop the least frecent entries (hits, decayed by time since last access) until
        the total is at most 90% of max_bytes. Returns how many were dropped."""
        (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
        if total <= max_bytes:
            return 0
        target = int(max_bytes * 0.9)
        now = time.time()
        rows = db.execute("SELECT key, size, hits, accessed FROM entries").fetchall()
        rows.sort(key=lambda row: (_frecency(row[2], row[3], now), row[3]))
        doomed = []
        for key, size, _, _ in rows:
            if total <= target:
                break
            doomed.append((key,))
            total -= size
        db.executemany("DELETE FROM entries WHERE key = ?", doomed)
        for (key,) in doomed:
            self._front.pop(key, None)
        return len(doomed)

    def flush(self) -> None:
        """Write batched hit counts, access times and the hit/miss counters."""
        with self._lock:
            pending, self._pending = self._pending, {}
            hits, misses = self._hits, self._misses
            self._hits = self._misses = 0
            if not pending and not hits and not misses:
                return

            def write(db: sqlite3.Connection) -> None:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "UPDATE entries SET hits = hits + ?, accessed = max(accessed, ?) WHERE key = ?",
                    [(count, last, key) for key, (count, last) in pending.items()],
                )
                db.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    [("hits", hits), ("misses", misses)],
                )
                db.execute("COMMIT")

            self._run(write, None)

    # -- maintenance ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        self.flush()

        def read(db: sqlite3.Connection) -> dict[str, int]:
            entries, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries"
            ).fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            return {"entries": entries, "bytes": size, **counters}

        data = self._run(read, default={"entries": 0, "bytes": 0})
        hits, misses = data.get("hits", 0), data.get("misses", 0)
        lookups = hits + misses
        return {
            "path": str(self.path),
            "entries": data["entries"],
            "bytes": data["bytes"],
            "max_bytes": self.config.max_bytes,
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / lookups if lookups else 0.0,
        }

    def clear(self) -> None:
        with self._lock:
            self._front.clear()
            self._pending.clear()
            self._run(lambda db: db.execute("DELETE FROM entries"), None)
            self._run(lambda db: db.execute("DELETE FROM counters"), None)

    def prune(self, max_bytes: int | None = None) -> int:
        limit = self.config.max_bytes if max_bytes is None else max_bytes
        with self._lock:
            return self._run(lambda db: self._evict(db, limit), default=0)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


_caches: dict[tuple[Path, CacheConfig], ResultCache] = {}
_by_settings: dict[tuple[int, Settings], ResultCache | None] = {}
_caches_lock = threading.Lock()
_errors = 0  # failed cache operations in this process (skipped, never raised)


def cache_errors() -> int:
    """How many cache reads or writes failed (disk full, read-only, deleted...) and were
    skipped, for the server's metrics."""
    return _errors


def result_cache(current: Settings | None = None) -> ResultCache | None:
    """The cache for the active configuration (`current`: the settings in force, when the
    caller has them already), or None when caching is off.

    On the hot path of every cached call, so the configuration is worked out once per
    combination of settings and configure_cache() calls.
    """
    current = current or settings()
    inputs = (_override_version, current)
    try:
        return _by_settings[inputs]
    except KeyError:
        pass
    config = _override if _override is not None else _from_settings(current)
    cache = None
    if config.enabled:
        path = (config.directory or current.cache_dir) / FILENAME
        with _caches_lock:
            cache = _caches.get((path, config))
            if cache is None:
                cache = _caches[(path, config)] = ResultCache(path, config)
    _by_settings[inputs] = cache
    return cache


@atexit.register
def _flush_all() -> None:
    for cache in list(_caches.values()):
        cache.close()
