"""The command line, run as a user would: in a subprocess."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import keel

KEEL = str(Path(sys.executable).with_name("keel"))


def _run(*args, stdin=None, env=None):
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


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
    for group in ("models", "cache", "serve"):
        assert _run(KEEL, group, "--help").returncode == 0


def test_prompt_from_stdin_and_json_result():
    out = _run(KEEL, "generate", "--json", "--max-new-tokens", "8", "--logprobs", stdin="Hi")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    events = list(keel.stream_generate("Hi", max_new_tokens=8, include_logprobs=True))
    assert result["text"] == "".join(e.text for e in events)
    assert result["token_ids"] == [e.token for e in events if e.token >= 0]
    assert len(result["logprobs"]["content"]) == len(result["token_ids"])
    assert result["fingerprint"] == events[-1].fingerprint.digest


def test_verbose_prints_speed_and_memory_on_stderr():
    out = _run(KEEL, "generate", "Hi", "--max-new-tokens", "4", "--verbose", "--logprobs")
    assert out.returncode == 0, out.stderr
    assert out.stdout == keel.generate("Hi", max_new_tokens=4) + "\n"
    for label in ("Prompt:", "Generation:", "tokens-per-sec", "Peak memory:"):
        assert label in out.stderr


def test_structured_options(tmp_path):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 9}}}
    schema["required"] = ["n"]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    out = _run(KEEL, "generate", "A number:", "--schema", str(path), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["value"] == keel.generate_json("A number:", schema)
    out = _run(KEEL, "generate", "Pick one", "--choices", "red,green,blue")
    assert out.stdout.strip() == keel.generate_choice("Pick one", ["red", "green", "blue"])
    out = _run(KEEL, "generate", "A year:", "--regex", "(19|20)[0-9]{2}")
    assert out.stdout.strip() == keel.generate_regex("A year:", "(19|20)[0-9]{2}")
    out = _run(KEEL, "generate", "x", "--schema", "{not json")
    assert out.returncode != 0 and "not valid JSON" in out.stderr


def test_models_commands():
    listing = _run(KEEL, "models", "list")
    assert listing.returncode == 0
    assert all(name in listing.stdout for name in ("smollm2-135m", "gemma3-270m", "qwen2.5-3b"))
    path = _run(KEEL, "models", "path", "gemma3-270m")
    assert path.returncode == 0 and Path(path.stdout.strip()).is_file()
    info = json.loads(_run(KEEL, "models", "info", "smollm2-135m").stdout)
    assert info["batch_sizes"][0] == 1 and info["slots"] >= 1 and len(info["sha256"]) == 64
    preload = _run(KEEL, "models", "preload", "smollm2-135m")
    assert preload.returncode == 0 and "ready" in preload.stdout
    missing = _run(KEEL, "models", "info", "nope")
    assert missing.returncode == 1 and "unknown model" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_keel_serve_answers_over_http():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [KEEL, "serve", "--port", str(port), "--api-key", "k", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        body = httpx.post(
            f"{url}/v1/generate",
            json={"prompt": "Hi", "max_new_tokens": 6},
            headers={"Authorization": "Bearer k"},
            timeout=60,
        ).json()
        assert body["text"] == keel.generate("Hi", max_new_tokens=6)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_importing_the_generate_module_keeps_the_function_callable():
    import keel.generate
    from keel.generate import generate

    assert callable(keel.generate) and keel.generate is generate is keel.api.generate


def test_keel_doctor_reports_the_portable_build_and_the_models():
    out = _run(KEEL, "doctor")
    assert out.returncode == 0, out.stderr
    assert "portable build          yes" in out.stdout
    assert "llama-cpp-python        0.3.36" in out.stdout
    assert "model smollm2-135m      bundled:" in out.stdout
    assert "extra [server]          installed" in out.stdout
