"""Loaded models: one engine and worker per model file, loaded once, shared by every caller.

A model's identity (name, sha256, context settings) is known without loading its weights,
so a fingerprint, and with it a cache lookup, never needs the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import settings, thread_count
from .engine.batching import proven_batch_sizes
from .engine.context import ContextSettings
from .engine.joint_check import proven_together
from .engine.library import build_info, warn_if_not_portable
from .engine.llama import LlamaEngine
from .engine.reuse_check import proven_any_position
from .events import KEEL_VERSION, Fingerprint
from .file_memo import FileStamp, file_stamp
from .models import ModelLocation, model_sha256
from .params import GenerationParams
from .sampling import noise_signature
from .scheduler import Worker


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    path: Path
    sha256: str
    context: ContextSettings
    stamp: FileStamp  # of the file whose sha256 this is

    def fingerprint(self, params: GenerationParams) -> Fingerprint:
        return Fingerprint.of(
            {
                "keel": KEEL_VERSION,
                "model": {"name": self.name, "sha256": self.sha256},
                "engine": build_info(),
                "context": self.context.numerics(),
                "sampling": params.sampling_dict(),
                "noise": noise_signature(),
            }
        )


@dataclass(frozen=True)
class Lane:
    """One context of a loaded model and the worker thread that drives it."""

    engine: LlamaEngine
    worker: Worker


@dataclass(frozen=True)
class LoadedModel:
    """A model's weights with one context (lane), or several on the same weights
    (KEEL_LANES, or while a batch wants more): on a machine with few cores, two
    one-thread contexts of 8 rows each decode about 17% more rows per second than one
    two-thread context of 16 (OpenMP's per-node barriers cost more than the second core
    gives a single context), and two of one row each nearly twice as many as one context
    with both rows; see engine/compute.py for how busy contexts share the threads."""

    identity: ModelIdentity
    lanes: list[Lane]
    _widening: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def engine(self) -> LlamaEngine:
        """The first lane's engine: vocabulary, context size and proofs are the same in all."""
        return self.lanes[0].engine

    @property
    def running(self) -> int:
        return sum(lane.worker.busy for lane in self.lanes)

    @property
    def waiting(self) -> int:
        return sum(lane.worker.waiting for lane in self.lanes)

    def lane(self) -> Lane:
        """Where a new generation goes: the least loaded of the lanes wanted now (the
        first on a tie, so a lone client, a chat session's turns among them, stays on one
        lane and keeps its prefix reuse)."""
        wanted = _lanes_wanted()
        if len(self.lanes) < wanted:
            with self._widening:
                while len(self.lanes) < wanted:
                    engine = self.engine.another_lane()
                    name = f"{self.identity.name}-{len(self.lanes)}"
                    self.lanes.append(Lane(engine, Worker(engine, name)))
        lanes = self.lanes[:wanted]
        return min(lanes, key=lambda lane: lane.worker.busy + lane.worker.waiting)

    @property
    def sha256(self) -> str:
        return self.identity.sha256

    @property
    def path(self) -> Path:
        return self.identity.path

    def info(self) -> dict[str, Any]:
        """What an operator needs to know (`keel models info`, the server's /health)."""
        engine = self.engine
        return {
            "name": self.identity.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "n_ctx": engine.n_ctx,
            "threads": engine.n_threads,
            "slots": engine.slots.count,
            "batch_sizes": list(engine.batch_sizes),
            "prefix_reuse": engine.slots.reuse.report(),
            "prefill_together": engine.slots.together,
            "chat_template": engine.vocab.chat_template is not None,
            "lanes": len(self.lanes),
            "running": self.running,
            "waiting": self.waiting,
        }


def identify(location: ModelLocation) -> ModelIdentity:
    context = ContextSettings(n_ctx=settings().n_ctx)
    stamp = file_stamp(location.path)
    return ModelIdentity(location.name, location.path, model_sha256(location.path), context, stamp)


# The sha256 is part of the key: a file replaced at the same path is another model.
_EngineKey = tuple[Path, str, ContextSettings, int, int]
_loaded: dict[_EngineKey, LoadedModel] = {}
_loading_locks: dict[_EngineKey, threading.Lock] = {}
_registry_lock = threading.Lock()


def load(identity: ModelIdentity) -> LoadedModel:
    """Thread-safe: concurrent first calls for one model load it once."""
    n_threads = thread_count()
    slots = settings().slots
    key = (identity.path, identity.sha256, identity.context, n_threads, slots)
    with _registry_lock:
        loaded = _loaded.get(key)
        if loaded is not None:
            return loaded
        lock = _loading_locks.setdefault(key, threading.Lock())
    with lock:
        loaded = _loaded.get(key)
        if loaded is None:
            warn_if_not_portable()
            engine = LlamaEngine(identity.path, identity.context, n_threads, slots)
            engine.batch_sizes = proven_batch_sizes(engine)
            engine.slots.reuse.any_position = proven_any_position(engine)
            engine.slots.together = proven_together(engine)
            loaded = LoadedModel(identity, [Lane(engine, Worker(engine, identity.name))])
            with _registry_lock:
                _loaded[key] = loaded
    return loaded


_lane_demands: list[int] = []  # one entry per open lanes_wanted(); guarded by _registry_lock


@contextmanager
def lanes_wanted(count: int) -> Iterator[None]:
    """While open, new generations spread over `count` contexts of their model (created
    on first use, kept afterwards; each holds its own KV cache)."""
    with _registry_lock:
        _lane_demands.append(count)
    try:
        yield
    finally:
        with _registry_lock:
            _lane_demands.remove(count)


def _lanes_wanted() -> int:
    """KEEL_LANES, or more while a batch asks for more."""
    floor = settings().lanes
    with _registry_lock:
        return max([floor, *_lane_demands])


def loaded_models() -> list[LoadedModel]:
    with _registry_lock:
        return list(_loaded.values())


def any_loaded() -> bool:
    with _registry_lock:
        return bool(_loaded)


def fallback_fingerprint(params: GenerationParams) -> Fingerprint:
    return Fingerprint.of(
        {"keel": KEEL_VERSION, "fallback": True, "sampling": params.sampling_dict()}
    )


def load_location(location: ModelLocation) -> LoadedModel:
    return load(identify(location))
