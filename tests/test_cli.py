"""The command line, run as a user would: in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import keel

KEEL = str(Path(sys.executable).with_name("keel"))


def _run(*args):
    return subprocess.run(args, capture_output=True, text=True, env=os.environ.copy(), timeout=300)


def test_keel_generate_streams_the_library_text():
    out = _run(
        KEEL,
        "generate",
        "Hello there",
        "--max-new-tokens",
        "12",
        "--seed",
        "3",
        "--temperature",
        "0.7",
    )
    assert out.returncode == 0, out.stderr
    expected = keel.generate("Hello there", max_new_tokens=12, seed=3, temperature=0.7)
    assert out.stdout == expected + "\n"
    assert out.stderr == ""


def test_python_m_keel_generate():
    out = _run(
        sys.executable,
        "-m",
        "keel.generate",
        "--prompt",
        "Once upon a time",
        "--size",
        "small",
        "--max-new-tokens",
        "10",
        "--eos-string",
        ".",
    )
    assert out.returncode == 0, out.stderr
    expected = keel.generate("Once upon a time", size="small", max_new_tokens=10, eos_string=".")
    assert out.stdout == expected + "\n"


def test_cli_errors_are_one_clear_line():
    out = _run(KEEL, "generate", "hi", "--seed", "-1")
    assert out.returncode != 0
    assert "seed must be an int" in out.stderr
    assert "Traceback" not in out.stderr
    out = _run(KEEL, "generate", "hi", "--model", "nonexistent-model")
    assert out.returncode != 0 and "unknown model" in out.stderr


def test_help_is_available():
    assert "generate" in _run(KEEL, "--help").stdout
    assert "--max-new-tokens" in _run(KEEL, "generate", "--help").stdout


def test_importing_the_generate_module_keeps_the_function_callable():
    import keel.generate  # rebinds keel.generate to the module

    assert keel.generate("Hi", max_new_tokens=4) == keel.api.generate("Hi", max_new_tokens=4)
