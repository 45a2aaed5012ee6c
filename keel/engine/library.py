"""The llama.cpp shared library: loaded once, its log routed through keel, and its build
identity (which decides the numbers) known without loading it."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from ..config import settings
from ..errors import warn_caller
from ..file_memo import remembered


@cache
def llama() -> ModuleType:
    """Import llama_cpp once and initialise its backend, with llama.cpp's log routed
    through keel: silent unless KEEL_VERBOSE=1 (the bindings' own filter misreads
    the current log levels and prints warnings on every load)."""
    import llama_cpp

    llama_cpp.llama_log_set(_log_callback(llama_cpp), ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    return llama_cpp


@cache
def _log_callback(llama_cpp: ModuleType) -> Any:
    verbose = settings().verbose  # read once: the callback also fires at interpreter exit

    def forward(level: int, text: bytes, _user_data: object) -> None:
        if verbose:
            sys.stderr.write(text.decode("utf-8", "replace"))

    return llama_cpp.llama_log_callback(forward)  # cached: C keeps the pointer


_LIBRARIES = ("libllama.so", "libggml-base.so", "libggml-cpu.so")


def library_files() -> list[Path]:
    """The shared objects whose build decides the numbers (found without importing them)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return []
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return [lib / name for name in _LIBRARIES if (lib / name).exists()]


@cache
def build_info() -> dict[str, str]:
    """llama.cpp build identity: bindings version and the CPU feature line (AVX2, AVX-512 ...).

    Remembered per library file version, so a fingerprint (and a cache lookup) never has to
    import and initialise llama.cpp.
    """

    def probe() -> str:
        lib = llama()
        return json.dumps(
            {
                "llama_cpp_python": lib.__version__,
                "system_info": lib.llama_print_system_info().decode("utf-8", "replace").strip(),
            }
        )

    info: dict[str, str] = json.loads(remembered("llama.cpp build", library_files(), probe))
    return info


# keel's portable build of llama.cpp: what scripts/llama-flags.sh builds with, and the CPU
# features llama.cpp then reports. A build for this machine (e.g. with AVX-512) computes
# other numbers, so its outputs differ from those of every portable build.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
PORTABLE_FLAGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_AVX512=OFF -DGGML_BLAS=OFF"
)
PORTABLE_FEATURES = frozenset(
    {"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2", "LLAMAFILE", "OPENMP", "REPACK"}
)


def cpu_features(system_info: str) -> frozenset[str]:
    """The features llama.cpp's system info line says it was built with ("AVX2 = 1")."""
    return frozenset(name for name, on in _FEATURE.findall(system_info) if on == "1")


def features_line(info: dict[str, str]) -> str:
    """A build's CPU features, sorted, for people to read."""
    return " ".join(sorted(cpu_features(info.get("system_info", ""))))


_FEATURE = re.compile(r"(\w+) = (\d)")


def is_portable(info: dict[str, str]) -> bool:
    return (
        info.get("llama_cpp_python") == LLAMA_CPP_PYTHON_VERSION
        and cpu_features(info.get("system_info", "")) == PORTABLE_FEATURES
    )


def portable_install_command() -> str:
    """The command that replaces the installed llama-cpp-python with keel's portable build."""
    return (
        f'CMAKE_ARGS="{PORTABLE_FLAGS}" pip install --force-reinstall --no-deps '
        f"--no-cache-dir --no-binary llama-cpp-python llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    )


@cache
def warn_if_not_portable() -> None:
    """Once per process: a build other than keel's portable one gives other outputs."""
    info = build_info()
    if not is_portable(info):
        warn_caller(
            f"llama-cpp-python {info.get('llama_cpp_python')} is not keel's portable build "
            f"(CPU features: {features_line(info)}): outputs will differ from a portable build's; "
            f"fix: {portable_install_command()} (see keel doctor)"
        )
