"""keel: deterministic text generation with local GGUF models."""

from .api import (
    generate,
    generate_choice,
    generate_iter,
    generate_json,
    generate_regex,
    preload_models,
    stream_generate,
)
from .errors import (
    GenerationError,
    InvalidParameterError,
    KeelError,
    KeelWarning,
    ModelLoadError,
    ModelNotAvailableError,
    StructuredOutputError,
    UnknownModelError,
)
from .events import Fingerprint, GenerationResponse, GenerationResult
from .params import DEFAULT_SEED
from .runtime import KEEL_VERSION as __version__

__all__ = [
    "DEFAULT_SEED",
    "Fingerprint",
    "GenerationError",
    "GenerationResponse",
    "GenerationResult",
    "InvalidParameterError",
    "KeelError",
    "KeelWarning",
    "ModelLoadError",
    "ModelNotAvailableError",
    "StructuredOutputError",
    "UnknownModelError",
    "__version__",
    "generate",
    "generate_choice",
    "generate_iter",
    "generate_json",
    "generate_regex",
    "preload_models",
    "stream_generate",
]
