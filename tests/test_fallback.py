import pytest

import keel


def test_no_fallback_without_opt_in(tmp_path):
    with pytest.raises(keel.ModelNotAvailableError):
        keel.generate("hi", model=str(tmp_path / "absent.gguf"))


def test_opt_in_fallback_is_deterministic_and_marked(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_ALLOW_FALLBACK", "1")
    absent = str(tmp_path / "absent.gguf")
    texts = [keel.generate("test prompt", model=absent, seed=seed) for seed in (1, 2, 3)]
    assert all(texts) and len(set(texts)) == 3
    assert keel.generate("test prompt", model=absent, seed=1) == texts[0]
    events = list(keel.stream_generate("test prompt", model=absent, seed=1))
    assert all(event.fallback for event in events)
    assert events[-1].fingerprint.details["fallback"] is True
    assert "".join(e.text for e in events) == texts[0]
    assert "".join(keel.generate_iter("test prompt", model=absent, seed=1)) == texts[0]


def test_fallback_never_hides_a_typo(monkeypatch):
    monkeypatch.setenv("KEEL_ALLOW_FALLBACK", "1")
    with pytest.raises(keel.UnknownModelError):
        keel.generate("hi", model="smolm2")
