"""`keel doctor`: what this installation is made of, and whether it gives the outputs
keel promises (its portable llama.cpp build), with the command that fixes what does not."""

from __future__ import annotations

import importlib.util
import platform
import sys

from .config import settings
from .engine.library import build_info, features_line, is_portable, portable_install_command
from .events import KEEL_VERSION
from .models import REGISTRY, model_status
from .server import SERVER_MODULES

_EXTRAS = {"server": SERVER_MODULES, "ray": ("ray",)}


def report() -> tuple[list[tuple[str, str]], bool]:
    """(label, value) lines, and whether the llama.cpp build is keel's portable one."""
    info = build_info()
    portable = is_portable(info)
    current = settings()
    lines = [
        ("keel", KEEL_VERSION),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("llama-cpp-python", info.get("llama_cpp_python", "?")),
        ("llama.cpp CPU features", features_line(info)),
        (
            "portable build",
            "yes: outputs match every other portable build"
            if portable
            else f"NO: outputs differ from portable builds; fix: {portable_install_command()}",
        ),
        ("cache directory", str(current.cache_dir)),
        ("result cache", "on" if current.cache_enabled else "off (KEEL_CACHE=0)"),
    ]
    for extra, modules in _EXTRAS.items():
        present = all(importlib.util.find_spec(module) is not None for module in modules)
        state = "installed" if present else f"missing: pip install 'keel-text[{extra}]'"
        lines.append((f"extra [{extra}]", state))
    for spec in REGISTRY.values():
        lines.append((f"model {spec.name}", model_status(spec)))
    return lines, portable
