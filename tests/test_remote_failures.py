"""Every way a remote server can fail, each a typed error with a clear message that never
repeats the API key, and nothing cached; against a stub server on a real socket (the
hosted providers cannot be reached from here)."""

from __future__ import annotations

import time

import pytest
from stub_openai import ANSWER, stub_server

import keel
from keel.cache import result_cache
from keel.errors import (
    InvalidParameterError,
    RemoteAuthError,
    RemoteModelNotFoundError,
    RemoteRateLimitError,
    RemoteResponseError,
    RemoteTimeoutError,
    RemoteUnavailableError,
)

KEY = "sk-test-secret-4242"


@pytest.fixture(scope="module")
def stub():
    with stub_server() as server:
        yield server


@pytest.fixture(autouse=True)
def fast_failures(monkeypatch, tmp_path):
    """A real key, short timeouts, two retries, and a fresh cache that is on."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("KEEL_REMOTE_RETRIES", "2")
    monkeypatch.setenv("KEEL_REMOTE_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("KEEL_REMOTE_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("KEEL_CACHE", "1")
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path))


def _ask(stub, model: str, **options):
    return keel.generate(
        "hi", model=f"openai:{model}", base_url=stub.url, unsafe_mode=True, **options
    )


def _no_key_in(error: BaseException) -> None:
    assert KEY not in str(error) and KEY not in repr(error.args)


def test_an_answer_is_cached_and_a_hit_sends_no_request(stub):
    before = stub.attempts["echo"]
    assert _ask(stub, "echo") == "".join(ANSWER)
    assert stub.attempts["echo"] == before + 1
    for _ in range(3):
        assert _ask(stub, "echo") == "".join(ANSWER)
        assert "".join(
            keel.generate_iter("hi", model="openai:echo", base_url=stub.url, unsafe_mode=True)
        ) == "".join(ANSWER)
    assert stub.attempts["echo"] == before + 1
    assert _ask(stub, "echo", cache=False) == "".join(ANSWER)
    assert stub.attempts["echo"] == before + 2
    path, headers, body = stub.requests[-1]
    assert path == "/v1/chat/completions" and headers["authorization"] == f"Bearer {KEY}"
    assert body["stream"] is True and body["seed"] == 42 and body["temperature"] == 0.0
    stored = result_cache().path.read_bytes()
    assert KEY.encode() not in stored


def test_every_parameter_is_in_the_cache_key(stub):
    _ask(stub, "echo", max_new_tokens=10)
    count = stub.attempts["echo"]
    _ask(stub, "echo", max_new_tokens=11)
    _ask(stub, "echo", max_new_tokens=10, seed=3)
    _ask(stub, "echo", max_new_tokens=10, stop=["zzz"])
    assert stub.attempts["echo"] == count + 3


def test_no_key_for_a_provider_that_needs_one(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(RemoteAuthError, match="OPENAI_API_KEY"):
        keel.generate("hi", model="openai:gpt-4o-mini", unsafe_mode=True)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, RemoteAuthError),
        (403, RemoteAuthError),
        (404, RemoteModelNotFoundError),
        (400, RemoteResponseError),
        (500, RemoteUnavailableError),
        (503, RemoteUnavailableError),
    ],
)
def test_status_codes_are_typed_and_never_echo_the_key(stub, status, error):
    model = f"status-{status}"
    before = stub.attempts[model]
    with pytest.raises(error, match=f"HTTP {status}") as caught:
        _ask(stub, model)
    _no_key_in(caught.value)
    assert caught.value.status == status and caught.value.provider == "openai"
    retried = 3 if status >= 500 else 1  # 5xx are retried (KEEL_REMOTE_RETRIES=2)
    assert stub.attempts[model] == before + retried
    assert result_cache().stats()["entries"] == 0


def test_rate_limits_are_retried_then_reported_with_the_hint(stub):
    before = stub.attempts["status-429"]
    with pytest.raises(RemoteRateLimitError) as caught:
        _ask(stub, "status-429")
    assert stub.attempts["status-429"] == before + 3
    assert caught.value.retry_after == pytest.approx(0.05)
    _no_key_in(caught.value)
    assert _ask(stub, "flaky") == "".join(ANSWER)  # one 429, then an answer


def test_retries_are_configurable(stub, monkeypatch):
    monkeypatch.setenv("KEEL_REMOTE_RETRIES", "0")
    before = stub.attempts["status-503"]
    with pytest.raises(RemoteUnavailableError):
        _ask(stub, "status-503")
    assert stub.attempts["status-503"] == before + 1
    monkeypatch.setenv("KEEL_REMOTE_RETRIES", "-1")
    with pytest.raises(ValueError, match="KEEL_REMOTE_RETRIES"):
        _ask(stub, "echo")


def test_timeouts(stub, monkeypatch):
    monkeypatch.setenv("KEEL_REMOTE_RETRIES", "0")
    started = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match="timed out"):
        _ask(stub, "slow")  # no answer at all within the read timeout
    with pytest.raises(RemoteTimeoutError):
        _ask(stub, "stall")  # the answer stops coming mid-stream
    assert time.perf_counter() - started < 5
    assert result_cache().stats()["entries"] == 0


def test_connection_refused(monkeypatch):
    monkeypatch.setenv("KEEL_REMOTE_RETRIES", "0")
    with pytest.raises(RemoteUnavailableError, match="could not be reached"):
        keel.generate("hi", model="vllm:m", base_url="http://127.0.0.1:9/v1", unsafe_mode=True)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("garbage", "malformed"),
        ("no-finish", "without a finish reason"),
        ("html", "without a finish reason"),
        ("filtered", "finish_reason='content_filter'"),
        ("refusal", "declined to answer: I cannot help"),
    ],
)
def test_malformed_answers(stub, model, message):
    with pytest.raises(RemoteResponseError, match=message):
        _ask(stub, model)
    assert result_cache().stats()["entries"] == 0


def test_a_keel_server_must_prove_its_fingerprint(stub):
    with pytest.raises(RemoteResponseError, match="fingerprint"):
        keel.generate("hi", model="keel:fake-keel", base_url=stub.url)
    with pytest.raises(RemoteResponseError, match="keel fingerprint"):
        keel.generate("hi", model="keel:echo", base_url=stub.url)  # not a keel at all


def test_bad_remote_arguments_are_refused_before_any_request(stub):
    sent = len(stub.requests)
    cases = [
        ({"model": "keel:smollm2-135m"}, "KEEL_REMOTE_URL"),
        ({"model": "openai:"}, "names no model"),
        ({"model": "openai:m", "base_url": "ftp://x"}, "http"),
        ({"model": "openai:m", "base_url": f"http://user:{KEY}@127.0.0.1/v1"}, "credentials"),
        ({"model": "openai:m", "size": "mini"}, "takes no size"),
        ({"model": "openai:m", "unsafe_mode": "yes"}, "unsafe_mode must be bool"),
        ({"model": "smollm2-135m", "base_url": stub.url}, "remote models"),
        ({"model": "openai:m", "no_repeat_ngram_size": 2}, "no_repeat_ngram_size"),
    ]
    for options, message in cases:
        options.setdefault("unsafe_mode", True)
        with pytest.raises(InvalidParameterError, match=message) as caught:
            keel.generate("hi", **options)
        _no_key_in(caught.value)
    assert len(stub.requests) == sent
