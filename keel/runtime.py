"""Loaded models: one engine per model file, loaded once, shared by every caller."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from .config import settings
from .engine.llama import ContextSettings, LlamaEngine, build_info
from .events import Fingerprint
from .models import ModelLocation, model_sha256
from .params import GenerationParams

KEEL_VERSION = version("keel-text")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    path: Path
    sha256: str
    engine: LlamaEngine

    def fingerprint(self, params: GenerationParams) -> Fingerprint:
        return Fingerprint.of(
            {
                "keel": KEEL_VERSION,
                "model": {"name": self.name, "sha256": self.sha256},
                "engine": build_info(),
                "context": self.engine.context.numerics(),
                "sampling": params.sampling_dict(),
            }
        )


_loaded: dict[tuple[Path, ContextSettings], LoadedModel] = {}
_loading_locks: dict[tuple[Path, ContextSettings], threading.Lock] = {}
_registry_lock = threading.Lock()


def load(location: ModelLocation) -> LoadedModel:
    """Thread-safe: concurrent first calls for one model load it once."""
    config = settings()
    context = ContextSettings(n_ctx=config.n_ctx, n_threads=config.n_threads)
    key = (location.path, context)
    with _registry_lock:
        loaded = _loaded.get(key)
        if loaded is not None:
            return loaded
        lock = _loading_locks.setdefault(key, threading.Lock())
    with lock:
        loaded = _loaded.get(key)
        if loaded is None:
            engine = LlamaEngine(location.path, context)
            loaded = LoadedModel(location.name, location.path, model_sha256(location.path), engine)
            with _registry_lock:
                _loaded[key] = loaded
    return loaded


def fallback_fingerprint(params: GenerationParams) -> Fingerprint:
    return Fingerprint.of(
        {"keel": KEEL_VERSION, "fallback": True, "sampling": params.sampling_dict()}
    )
