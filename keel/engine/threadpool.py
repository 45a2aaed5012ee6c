"""Which CPU each of a context's llama.cpp threads runs on.

Left to the kernel, the two threads of a decode on a two-core VM move between the cores;
each move costs the thread its cache, and a wake-up that crosses cores costs 0.1-0.3 ms
there, so the OpenMP team's barriers wait on the slower of the two. When a context uses
every CPU the process may run on, keel hands llama.cpp a thread pool that keeps thread i
on the i-th of those CPUs (ggml applies it at every decode). The Python threads stay free
to run wherever a core is idle. Measured with `keel serve` against the same server
unpinned, both running and taking turns: 1.03-1.09x at 8 streaming clients, 1.00x at 1.

With fewer threads than CPUs nothing is pinned: which cores to pick (SMT siblings, other
processes' cores) is the kernel's business then. KEEL_PIN_THREADS=0 turns pinning off.
Where a thread runs never changes a result.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache
from typing import Any

from ..config import settings
from .library import library_files

_MAX_THREADS = 512  # GGML_MAX_N_THREADS
_NAMES = ("libggml-base.so", "libggml-cpu.so", "libllama.so")


class _Params(ctypes.Structure):
    """ggml.h's struct ggml_threadpool_params."""

    _fields_ = [
        ("cpumask", ctypes.c_bool * _MAX_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


def pinned_cpus(n_threads: int) -> list[int] | None:
    """The CPUs the threads of a context with `n_threads` threads keep to, in thread order;
    None when they are left to the kernel."""
    if n_threads < 2 or not settings().pin_threads or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) != n_threads or allowed[-1] >= _MAX_THREADS:
        return None
    return allowed


@cache
def _libraries() -> tuple[Any, Any, Any]:
    """ggml's base and CPU libraries and libllama, as llama_cpp already loaded them (the
    bindings leave the thread-pool functions out)."""
    files = {path.name: path for path in library_files()}
    base, cpu, llama = (ctypes.CDLL(str(files[name])) for name in _NAMES)
    base.ggml_threadpool_params_init.argtypes = [ctypes.POINTER(_Params), ctypes.c_int]
    base.ggml_threadpool_params_init.restype = None
    cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(_Params)]
    cpu.ggml_threadpool_new.restype = ctypes.c_void_p
    cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
    cpu.ggml_threadpool_free.restype = None
    llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p] * 3
    llama.llama_attach_threadpool.restype = None
    return base, cpu, llama


class PinnedThreads:
    """A ggml thread pool that keeps thread i of a context's decodes on cpus[i]; attach it
    to the context, and free it only after the context."""

    def __init__(self, cpus: list[int]) -> None:
        base, self._cpu, self._llama = _libraries()
        params = _Params()
        base.ggml_threadpool_params_init(ctypes.byref(params), len(cpus))
        for cpu in cpus:
            params.cpumask[cpu] = True
        params.strict_cpu = True  # one CPU per thread, in order, not the whole mask each
        self.pointer = self._cpu.ggml_threadpool_new(ctypes.byref(params))
        if not self.pointer:
            raise MemoryError("ggml could not allocate a thread pool")

    def attach(self, context: Any) -> None:
        """Use the pool for the context's decodes (one-row and batched alike)."""
        self._llama.llama_attach_threadpool(context, self.pointer, self.pointer)

    def close(self) -> None:
        if self.pointer:
            self._cpu.ggml_threadpool_free(self.pointer)
            self.pointer = None
