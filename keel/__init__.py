"""keel: deterministic text generation with local GGUF models."""

from .aio import agenerate, agenerate_iter, astream_generate
from .api import (
    generate,
    generate_choice,
    generate_iter,
    generate_json,
    generate_regex,
    generate_streaming,
    preload_models,
    start_generation,
    stream_generate,
    stream_tokens,
)
from .errors import (
    GenerationError,
    InvalidParameterError,
    KeelError,
    KeelWarning,
    ModelLoadError,
    ModelNotAvailableError,
    QueueFullError,
    StructuredOutputError,
    UnknownModelError,
)
from .events import Fingerprint, GenerationResponse, GenerationResult
from .params import DEFAULT_SEED
from .runtime import KEEL_VERSION as __version__
from .stream import GenerationHandle

__all__ = [
    "DEFAULT_SEED",
    "Fingerprint",
    "GenerationError",
    "GenerationHandle",
    "GenerationResponse",
    "GenerationResult",
    "InvalidParameterError",
    "KeelError",
    "KeelWarning",
    "ModelLoadError",
    "ModelNotAvailableError",
    "QueueFullError",
    "StructuredOutputError",
    "UnknownModelError",
    "__version__",
    "agenerate",
    "agenerate_iter",
    "astream_generate",
    "generate",
    "generate_choice",
    "generate_iter",
    "generate_json",
    "generate_regex",
    "generate_streaming",
    "preload_models",
    "start_generation",
    "stream_generate",
    "stream_tokens",
]
