"""Settings read from the environment, in one place so every module agrees on them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import platformdirs
import psutil


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    n_ctx: int
    allow_downloads: bool
    allow_fallback: bool
    verbose: bool
    slots: int


@cache
def _physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@cache
def _default_cache_dir() -> str:
    return platformdirs.user_cache_dir("keel")


def thread_count() -> int:
    """llama.cpp threads: KEEL_THREADS, else the physical cores. Separate from settings()
    because counting cores is slow and only loading a model needs it."""
    return positive_int("KEEL_THREADS", 0) or _physical_cores()


def settings() -> Settings:
    """Read the environment now (not at import) so tests and long-lived servers see changes."""
    cache_dir = os.environ.get("KEEL_CACHE_DIR") or _default_cache_dir()
    return Settings(
        cache_dir=Path(cache_dir),
        n_ctx=positive_int("KEEL_N_CTX", 2048),
        allow_downloads=_flag("KEEL_ALLOW_DOWNLOADS"),
        allow_fallback=_flag("KEEL_ALLOW_FALLBACK"),
        verbose=_flag("KEEL_VERBOSE"),
        slots=positive_int("KEEL_SLOTS", 8),
    )
