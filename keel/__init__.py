"""keel: deterministic text generation with local GGUF models. This module is the public
API; everything else in the package is internal."""

# Loaded before the function `generate` is bound below: see keel/generate/__init__.py.
from . import generate as _generate_module  # noqa: F401
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
from .batch import (
    BatchInputError,
    BatchResult,
    LocalEngine,
    RayEngine,
    generate_batch,
    iter_batch,
)
from .cache import configure_cache
from .chat import ChatSession, turn_seed
from .errors import (
    GenerationError,
    InvalidConstraintError,
    InvalidParameterError,
    KeelError,
    KeelWarning,
    MissingExtraError,
    ModelLoadError,
    ModelNotAvailableError,
    QueueFullError,
    RemoteAuthError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteRateLimitError,
    RemoteResponseError,
    RemoteTimeoutError,
    RemoteUnavailableError,
    StructuredOutputError,
    UnknownModelError,
    UnsafeModeRequiredError,
)
from .events import KEEL_VERSION as __version__
from .events import Fingerprint, FinishReason, GenerationResponse, GenerationResult, ToolCall
from .handle import GenerationHandle
from .params import DEFAULT_SEED

__all__ = [
    "DEFAULT_SEED",
    "BatchInputError",
    "BatchResult",
    "ChatSession",
    "Fingerprint",
    "FinishReason",
    "GenerationError",
    "GenerationHandle",
    "GenerationResponse",
    "GenerationResult",
    "InvalidConstraintError",
    "InvalidParameterError",
    "KeelError",
    "KeelWarning",
    "LocalEngine",
    "MissingExtraError",
    "ModelLoadError",
    "ModelNotAvailableError",
    "QueueFullError",
    "RayEngine",
    "RemoteAuthError",
    "RemoteError",
    "RemoteModelNotFoundError",
    "RemoteRateLimitError",
    "RemoteResponseError",
    "RemoteTimeoutError",
    "RemoteUnavailableError",
    "StructuredOutputError",
    "ToolCall",
    "UnknownModelError",
    "UnsafeModeRequiredError",
    "__version__",
    "agenerate",
    "agenerate_iter",
    "astream_generate",
    "configure_cache",
    "generate",
    "generate_batch",
    "generate_choice",
    "generate_iter",
    "generate_json",
    "generate_regex",
    "generate_streaming",
    "iter_batch",
    "preload_models",
    "start_generation",
    "stream_generate",
    "stream_tokens",
    "turn_seed",
]
