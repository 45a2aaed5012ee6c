"""Remote models against real servers on loopback: `keel serve` in its own process (as
`keel:` and as an `openai:` server) and llama-cpp-python's own OpenAI-compatible server.
A remote keel must give exactly the local text, every way it is asked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import BaseModel, Field
from serving import keel_serve, llama_cpp_server, running_server

import keel
from keel.errors import (
    InvalidParameterError,
    RemoteResponseError,
    StructuredOutputError,
    UnsafeModeRequiredError,
)
from keel.events import FinishReason
from keel.models import resolve_model
from keel.server import ServerConfig, create_app

PROMPT = "Write one sentence about the sea."
SHORT = {"max_new_tokens": 24}
SAMPLED = {"temperature": 0.8, "seed": 7}
CALM = {"type": "object", "properties": {"calm": {"type": "boolean"}}, "required": ["calm"]}


@pytest.fixture(scope="module")
def keel_url():
    with keel_serve() as url:
        yield url


def _remote(url: str, model: str = "smollm2-135m") -> dict:
    return {"model": f"keel:{model}", "base_url": url}


@pytest.fixture
def openai_at_keel(keel_url, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", f"{keel_url}/v1")
    return {"model": "openai:smollm2-135m", "unsafe_mode": True}


@pytest.mark.parametrize("sampling", [{}, SAMPLED], ids=["greedy", "sampled"])
def test_keel_remote_equals_local_every_way(keel_url, sampling):
    options = {**SHORT, **sampling}
    local = keel.generate(PROMPT, **options)
    remote = _remote(keel_url)
    assert keel.generate(PROMPT, **options, **remote) == local
    assert "".join(keel.generate_iter(PROMPT, **options, **remote)) == local
    assert asyncio.run(keel.agenerate(PROMPT, **options, **remote)) == local
    result = keel.start_generation(PROMPT, **options, **remote).result()
    assert result.text == local
    assert result.fingerprint.tier == "exact"
    server = result.fingerprint.details["server"]
    assert server["model"]["sha256"] == keel.preload_models().sha256
    assert server["sampling"]["seed"] == options.get("seed", 42)


def test_keel_remote_base_model_and_raw_prompt(keel_url):
    """Gemma (base, no chat template) by name, and a raw prompt on the completions route."""
    for options in ({"model": "gemma3-270m"}, {"raw": True}):
        local = keel.generate(PROMPT, **SHORT, **options)
        remote = _remote(keel_url, options.get("model", "smollm2-135m"))
        assert keel.generate(PROMPT, **SHORT, **{**options, **remote}) == local


def test_keel_remote_stop_strings_logprobs_and_penalties(keel_url):
    options = {
        **SHORT,
        "stop": ["realm"],
        "repetition_penalty": 1.3,
        "no_repeat_ngram_size": 3,
        "top_k": 40,
        "min_p": 0.05,
        **SAMPLED,
    }
    local = keel.start_generation(PROMPT, include_logprobs=True, **options).result()
    remote = keel.start_generation(
        PROMPT, include_logprobs=True, **options, **_remote(keel_url)
    ).result()
    assert remote.text == local.text
    assert (remote.finish_reason, remote.stop_string) == (local.finish_reason, local.stop_string)
    assert [(e.text, e.logprob) for e in remote.logprobs] == [
        (e.text, e.logprob) for e in local.logprobs
    ]


class Sea(BaseModel):
    name: str = Field(max_length=20)
    depth_m: int = Field(ge=0, le=20000)


@pytest.mark.parametrize(
    "constraint",
    [{"schema": Sea}, {"regex": r"[A-Z][a-z]{2,8}"}, {"choices": ["calm", "stormy"]}],
    ids=["schema", "regex", "choices"],
)
def test_keel_remote_structured_output_equals_local(keel_url, constraint):
    prompt = "Describe a sea."
    local = keel.generate(prompt, max_new_tokens=64, **constraint)
    assert keel.generate(prompt, max_new_tokens=64, **constraint, **_remote(keel_url)) == local
    if "schema" in constraint:
        value = keel.generate_json(prompt, Sea, max_new_tokens=64, **_remote(keel_url))
        assert value == keel.generate_json(prompt, Sea, max_new_tokens=64)


def test_openai_provider_at_a_keel_server(openai_at_keel, monkeypatch):
    for sampling in ({}, SAMPLED):
        local = keel.generate(PROMPT, **SHORT, **sampling)
        assert keel.generate(PROMPT, **SHORT, **sampling, **openai_at_keel) == local
        pieces = keel.generate_iter(PROMPT, **SHORT, **sampling, **openai_at_keel)
        assert "".join(pieces) == local
    result = keel.start_generation(PROMPT, **SHORT, **openai_at_keel).result()
    assert result.fingerprint.tier == "best-effort"
    remote = result.fingerprint.details["remote"]
    assert remote["provider"] == "openai" and remote["system_fingerprint"].startswith("fp_")
    # JSON through OpenAI's json_schema response format comes back wrapped, as locally
    local = keel.generate("Is the sea calm?", schema=CALM, max_new_tokens=32)
    assert (
        keel.generate("Is the sea calm?", schema=CALM, max_new_tokens=32, **openai_at_keel) == local
    )
    choice = keel.generate_choice("Is the sea calm?", ["yes", "no"], **openai_at_keel)
    assert choice in ("yes", "no")


def test_best_effort_needs_opt_in(openai_at_keel, monkeypatch):
    with pytest.raises(UnsafeModeRequiredError, match="unsafe_mode=True"):
        keel.generate(PROMPT, model="openai:smollm2-135m")
    with pytest.raises(UnsafeModeRequiredError):
        list(keel.generate_iter(PROMPT, model="openai:smollm2-135m"))
    monkeypatch.setenv("KEEL_UNSAFE_MODE", "1")
    assert keel.generate(PROMPT, **SHORT, model="openai:smollm2-135m") == keel.generate(
        PROMPT, **SHORT
    )


def test_a_regex_without_native_enforcement_is_still_validated(openai_at_keel):
    with pytest.raises(StructuredOutputError) as caught:
        keel.generate(PROMPT, **SHORT, regex=r"[0-9]{3}", **openai_at_keel)
    assert caught.value.partial_text  # the raw text, for the caller to look at


def test_openai_refuses_what_it_has_no_word_for(openai_at_keel):
    with pytest.raises(InvalidParameterError, match="top_k"):
        keel.generate(PROMPT, top_k=5, **openai_at_keel)
    with pytest.raises(InvalidParameterError, match="reasoning"):
        keel.generate(PROMPT, schema=Sea, reasoning=True, **openai_at_keel)


def test_cancel_a_remote_stream(keel_url):
    pieces: list[str] = []

    def keep(piece: str) -> bool:
        pieces.append(piece)
        return len(pieces) < 3

    result = keel.generate_streaming(PROMPT, keep, **SHORT, **_remote(keel_url))
    assert result.finish_reason == FinishReason.CANCELLED
    assert result.text == "".join(pieces)


def test_a_remote_keel_cache_hit_equals_the_miss(keel_url, monkeypatch, tmp_path):
    monkeypatch.setenv("KEEL_CACHE", "1")
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path))
    options = {**SHORT, **SAMPLED, **_remote(keel_url)}
    miss = keel.start_generation(PROMPT, **options).result()
    hit = keel.start_generation(PROMPT, **options).result()
    assert not miss.cached and hit.cached
    assert (hit.text, hit.fingerprint.digest) == (miss.text, miss.fingerprint.digest)
    assert (
        keel.generate(PROMPT, **options)
        == miss.text
        == "".join(keel.generate_iter(PROMPT, **options))
    )


def test_cli_remote_equals_local(keel_url):
    keel_cli = str(Path(sys.executable).with_name("keel"))
    arguments = ["generate", "--max-new-tokens", "24", PROMPT]
    local = subprocess.run([keel_cli, *arguments], capture_output=True, text=True, check=True)
    remote = subprocess.run(
        [keel_cli, *arguments, "--model", "keel:smollm2-135m", "--base-url", keel_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert remote.stdout == local.stdout


def test_a_server_proxies_a_remote_model(keel_url, monkeypatch):
    """keel serve --model keel:... : the proxy answers with the remote's exact text, on
    the native route and to the openai client."""
    monkeypatch.setenv("KEEL_REMOTE_URL", keel_url)
    local = keel.generate(PROMPT, **SHORT)
    with running_server(ServerConfig(model="keel:smollm2-135m")) as proxy:
        body = httpx.post(f"{proxy}/v1/generate", json={"prompt": PROMPT, **SHORT}, timeout=60)
        assert body.status_code == 200 and body.json()["text"] == local
        client = openai.OpenAI(base_url=f"{proxy}/v1", api_key="unused")
        stream = client.chat.completions.create(
            model="keel:smollm2-135m",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=24,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == local
    with pytest.raises(UnsafeModeRequiredError):
        create_app(ServerConfig(model="openai:gpt-4o-mini"))


def test_keel_server_errors_come_back_typed(keel_url):
    with pytest.raises(RemoteResponseError, match="max_tokens"):
        keel.generate(PROMPT, max_new_tokens=100_000, **_remote(keel_url))
    with pytest.raises(keel.errors.RemoteModelNotFoundError):
        keel.generate(PROMPT, model="keel:no-such-model", base_url=keel_url)


# -- llama-cpp-python's server: a third-party implementation -------------------------------


@pytest.fixture(scope="module")
def llama_cpp_url():
    with llama_cpp_server(str(resolve_model("smollm2-135m").path), "smol") as url:
        yield url


def test_llama_cpp_server_text_stream_seed_and_schema(llama_cpp_url, monkeypatch, tmp_path):
    """Its greedy answers change between identical requests (its prompt cache changes the
    numerics): best-effort, made steady by keel's cache, so streamed == not streamed."""
    monkeypatch.setenv("KEEL_CACHE", "1")
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path))
    remote = {"model": "llamacpp:smol", "base_url": llama_cpp_url, "unsafe_mode": True}
    for sampling in ({}, SAMPLED):
        first = keel.start_generation(PROMPT, **SHORT, **sampling, **remote).result()
        assert first.text and not first.cached
        assert first.fingerprint.tier == "best-effort"
        assert first.fingerprint.details["request"]["seed"] == sampling.get("seed", 42)
        assert keel.generate(PROMPT, **SHORT, **sampling, **remote) == first.text
        assert "".join(keel.generate_iter(PROMPT, **SHORT, **sampling, **remote)) == first.text
    # its own schema-to-grammar lets invalid JSON through for Sea (raw control characters,
    # no maxLength): keel's check on the way back is what catches that; this one it keeps
    value = keel.generate_json("Is the sea calm?", CALM, max_new_tokens=32, **remote)
    assert isinstance(value["calm"], bool)
    assert keel.generate_choice("Is the sea calm?", ["yes", "no"], **remote) in ("yes", "no")
    entries = keel.generate(PROMPT, **SHORT, return_logprobs=True, **remote)[1]["content"]
    assert entries and all(e["logprob"] <= 0 for e in entries)


def test_llama_cpp_server_errors(llama_cpp_url):
    remote = {"model": "llamacpp:smol", "base_url": llama_cpp_url, "unsafe_mode": True}
    with pytest.raises(RemoteResponseError, match="without a finish reason"):
        keel.generate("word " * 3000, max_new_tokens=8, **remote)  # over its context
    with pytest.raises(keel.errors.RemoteError, match="HTTP 500"):
        # openai: asks for OpenAI's json_schema response format, which it does not take
        keel.generate(PROMPT, schema=Sea, **{**remote, "model": "openai:smol"})


def test_json_is_cached_only_when_valid(llama_cpp_url, monkeypatch, tmp_path):
    monkeypatch.setenv("KEEL_CACHE", "1")
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path))
    remote = {"model": "llamacpp:smol", "base_url": llama_cpp_url, "unsafe_mode": True}
    with pytest.raises(StructuredOutputError):
        keel.generate(PROMPT, regex=r"[0-9]{40}", max_new_tokens=4, **remote)
    stats = json.loads(json.dumps(keel.cache.result_cache().stats()))
    assert stats["entries"] == 0
