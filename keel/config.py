"""Every setting keel reads from the environment, read here and nowhere else.

Settings are read when asked for, not at import, so tests and long-lived servers see
changes; a snapshot is worked out once per combination of the raw variables, because
the result cache's fast path asks for it on every call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import platformdirs
import psutil

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Where each remote provider is, when not at its default address (keel.remote.providers
# names these); part of Settings, because they decide which server answers.
REMOTE_URL_VARIABLES = (
    "OPENAI_BASE_URL",
    "OPENROUTER_BASE_URL",
    "CEREBRAS_BASE_URL",
    "VLLM_BASE_URL",
    "LLAMACPP_BASE_URL",
    "KEEL_REMOTE_URL",
)
# Every variable that goes into Settings; KEEL_THREADS and API keys are read apart
# (counting cores is slow, and a secret has no place in a hashable snapshot).
_VARIABLES = (
    *REMOTE_URL_VARIABLES,
    "KEEL_CACHE_DIR",
    "KEEL_N_CTX",
    "KEEL_SLOTS",
    "KEEL_LANES",
    "KEEL_QUEUE_DEPTH",
    "KEEL_ALLOW_DOWNLOADS",
    "KEEL_ALLOW_FALLBACK",
    "KEEL_VERBOSE",
    "KEEL_CACHE",
    "KEEL_CACHE_MAX_MB",
    "KEEL_UNSAFE_MODE",
    "KEEL_REMOTE_RETRIES",
    "KEEL_REMOTE_CONNECT_TIMEOUT",
    "KEEL_REMOTE_READ_TIMEOUT",
)
DEFAULT_CACHE_MAX_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    n_ctx: int
    slots: int
    lanes: int  # contexts per model for every caller (a batch may ask for more)
    queue_depth: int
    allow_downloads: bool
    allow_fallback: bool
    verbose: bool
    cache_enabled: bool
    cache_max_bytes: int
    unsafe_mode: bool  # best-effort remote backends allowed without asking per call
    remote_urls: tuple[tuple[str, str], ...]  # (variable, URL) for those that are set
    remote_retries: int  # further attempts after a 429, 5xx, timeout or lost connection
    remote_connect_timeout: float  # seconds
    remote_read_timeout: float  # seconds to wait for the next piece of an answer

    def remote_url(self, variable: str) -> str | None:
        return dict(self.remote_urls).get(variable)


def _flag(raw: str | None, default: bool = False) -> bool:
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


def _positive(name: str, raw: str | None, default: int, kind: type[int | float] = int) -> int:
    """A positive number from the environment (a float is MiB, returned in bytes)."""
    if raw is None or raw.strip() == "":
        return default
    what = "integer" if kind is int else "number of MiB"
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive {what}, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be a positive {what}, got {raw!r}")
    return int(value) if kind is int else int(value * 2**20)


def _at_least(name: str, raw: str | None, default: float, kind: type, low: float) -> float:
    """A number from the environment: `kind` (int or float), >= low (> low for floats)."""
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    valid = value is not None and (value >= low if kind is int else low < value < float("inf"))
    if not valid:
        what = f"an integer >= {low:g}" if kind is int else f"a number > {low:g}"
        raise ValueError(f"{name} must be {what}, got {raw!r}")
    return float(value) if kind is float else int(value)


@cache
def _default_cache_dir() -> str:
    return platformdirs.user_cache_dir("keel")


# The raw values are read straight from os.environ's own mapping where there is one (POSIX:
# bytes keys): os.environ.get raises and catches a KeyError for every unset variable, about
# 1 µs each, and the result cache's fast path reads the settings on every call.
_ENCODED = tuple(os.fsencode(name) for name in _VARIABLES)
_DATA: dict[bytes, bytes] | None = (
    getattr(os.environ, "_data", None) if os.name == "posix" else None
)


def _raw_values() -> tuple[str | bytes | None, ...]:
    if _DATA is not None:
        data = _DATA
        return tuple([data.get(key) for key in _ENCODED])
    environ = os.environ
    return tuple([environ.get(name) for name in _VARIABLES])


@cache
def _settings_from(raw: tuple[str | bytes | None, ...]) -> Settings:
    values = (os.fsdecode(value) if isinstance(value, bytes) else value for value in raw)
    env = dict(zip(_VARIABLES, values, strict=True))
    return Settings(
        cache_dir=Path(env["KEEL_CACHE_DIR"] or _default_cache_dir()),
        n_ctx=_positive("KEEL_N_CTX", env["KEEL_N_CTX"], 2048),
        slots=_positive("KEEL_SLOTS", env["KEEL_SLOTS"], 8),
        lanes=_positive("KEEL_LANES", env["KEEL_LANES"], 1),
        queue_depth=_positive("KEEL_QUEUE_DEPTH", env["KEEL_QUEUE_DEPTH"], 64),
        allow_downloads=_flag(env["KEEL_ALLOW_DOWNLOADS"]),
        allow_fallback=_flag(env["KEEL_ALLOW_FALLBACK"]),
        verbose=_flag(env["KEEL_VERBOSE"]),
        cache_enabled=_flag(env["KEEL_CACHE"], default=True),
        cache_max_bytes=_positive(
            "KEEL_CACHE_MAX_MB", env["KEEL_CACHE_MAX_MB"], DEFAULT_CACHE_MAX_BYTES, float
        ),
        unsafe_mode=_flag(env["KEEL_UNSAFE_MODE"]),
        remote_urls=tuple(
            (name, url) for name in REMOTE_URL_VARIABLES if (url := (env[name] or "").strip())
        ),
        remote_retries=int(_at_least("KEEL_REMOTE_RETRIES", env["KEEL_REMOTE_RETRIES"], 2, int, 0)),
        remote_connect_timeout=_at_least(
            "KEEL_REMOTE_CONNECT_TIMEOUT", env["KEEL_REMOTE_CONNECT_TIMEOUT"], 10.0, float, 0
        ),
        remote_read_timeout=_at_least(
            "KEEL_REMOTE_READ_TIMEOUT", env["KEEL_REMOTE_READ_TIMEOUT"], 120.0, float, 0
        ),
    )


def settings() -> Settings:
    """The settings in force now (a frozen, hashable snapshot)."""
    return _settings_from(_raw_values())


@cache
def _physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def thread_count() -> int:
    """llama.cpp threads: KEEL_THREADS, else the physical cores. Not in Settings because
    counting cores is slow and only loading a model needs it; it does not change outputs."""
    raw = os.environ.get("KEEL_THREADS")
    return _positive("KEEL_THREADS", raw, 0) or _physical_cores()


def api_key() -> str | None:
    """The Bearer key `keel serve` requires (KEEL_API_KEY), if any."""
    return os.environ.get("KEEL_API_KEY") or None


def secret(variable: str) -> str | None:
    """A remote provider's API key (e.g. OPENAI_API_KEY), read when a request is sent and
    never kept in Settings, so it cannot reach a cache key, a fingerprint or a log."""
    return (os.environ.get(variable) or "").strip() or None
