"""The persistent result cache: a finished run stored under a key that covers everything
that decided it (record.py), in SQLite with an in-memory front (store.py)."""

from .record import Record, Recorder
from .store import (
    FILENAME,
    CacheConfig,
    ResultCache,
    cache_config,
    cache_errors,
    cache_key,
    configure_cache,
    result_cache,
)

__all__ = [
    "FILENAME",
    "CacheConfig",
    "Record",
    "Recorder",
    "ResultCache",
    "cache_config",
    "cache_errors",
    "cache_key",
    "configure_cache",
    "result_cache",
]
