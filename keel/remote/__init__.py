"""Remote backends: `PROVIDER:MODEL` names served by an OpenAI-compatible server (OpenAI,
OpenRouter, Cerebras, vLLM, llama.cpp) or by another keel. plan() turns a call's
arguments into a RemoteCall; RemoteSource runs it as an EventSource."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..errors import InvalidParameterError
from ..events import KEEL_VERSION, Fingerprint
from ..params import make_params
from ..structured import Constraint, ConstraintKind
from .providers import PROVIDERS, Provider, Shape
from .source import RemoteCall, RemoteSource
from .target import RemoteTarget, is_remote, remote_target, require_opt_in

__all__ = [
    "PROVIDERS",
    "Provider",
    "RemoteCall",
    "RemoteSource",
    "RemoteTarget",
    "Shape",
    "is_remote",
    "plan",
]


def plan(
    location: Mapping[str, Any],
    base_url: object,
    unsafe_mode: bool,
    constraint: Constraint | None,
    options: dict[str, Any],
    current: Settings,
) -> RemoteCall:
    """Check everything (opt-in, location, parameters the provider can take) before any
    request, and fingerprint the request: what the cache key is made of."""
    model = location["model"]
    others = [key for key, value in location.items() if key != "model" and value is not None]
    if others:
        raise InvalidParameterError(f"a remote model takes no {', '.join(others)}")
    target: RemoteTarget = remote_target(model, base_url, current)
    require_opt_in(target, unsafe_mode, current)
    exact = target.provider.tier == "exact"
    params = make_params(
        constraint=constraint.key if constraint else "",
        # keel's default repetition penalty under a schema is for keel's own decoding
        json_output=exact and constraint is not None and constraint.kind is ConstraintKind.JSON,
        **options,
    )
    request = target.provider.request(target.model, params, constraint)
    fingerprint = Fingerprint.of(
        {
            "keel": KEEL_VERSION,
            "remote": target.identity(),
            "request": request.described(),
            "sampling": params.sampling_dict(),
        }
    )
    return RemoteCall(target, request, params, fingerprint, current)
