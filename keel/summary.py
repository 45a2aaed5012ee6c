"""One finished generation as plain JSON data: what `keel generate --json` prints and what
the server's /v1/generate returns, so the two can be compared field for field."""

from __future__ import annotations

from typing import Any

from .events import GenerationResponse, GenerationResult


def stats(last: GenerationResponse | None) -> dict[str, Any]:
    """Speed and memory figures from a run's last event."""
    if last is None:
        return {}
    return {
        "prompt_tokens": last.prompt_tokens,
        "generation_tokens": last.generation_tokens,
        "prompt_tokens_per_second": round(last.prompt_tps, 3),
        "generation_tokens_per_second": round(last.generation_tps, 3),
        "time_to_first_token": round(last.time_to_first_token, 6),
        "peak_memory_gb": round(last.peak_memory, 3),
        "prompt_reused": last.prompt_reused,
        "prompt_truncated": last.prompt_truncated,
        "cached": last.cached,
    }


def summary(result: GenerationResult, last: GenerationResponse | None) -> dict[str, Any]:
    return {
        "text": result.text,
        "token_ids": list(result.tokens),
        "logprobs": result.logprobs_dict(),
        "finish_reason": result.finish_reason,
        "stop_string": result.stop_string,
        "value": result.value,  # JSON data: the CLI and server take JSON Schema dicts only
        "stats": stats(last),
        "fingerprint": result.fingerprint.digest if result.fingerprint else None,
    }
