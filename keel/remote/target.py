"""`PROVIDER:MODEL` names: which provider, which server, and whether the caller may use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import InvalidParameterError, UnsafeModeRequiredError
from .providers import PROVIDERS, Provider


@dataclass(frozen=True)
class RemoteTarget:
    provider: Provider
    model: str  # as the server names it
    base_url: str  # without a trailing slash; never holds credentials

    @property
    def label(self) -> str:
        return f"{self.provider.name}:{self.model}"

    def identity(self) -> dict[str, Any]:
        """What the fingerprint says about where the answer came from."""
        return {
            "provider": self.provider.name,
            "base_url": self.base_url,
            "host": urlsplit(self.base_url).netloc,
            "model": self.model,
            "tier": self.provider.tier,
        }


def is_remote(model: object) -> bool:
    return isinstance(model, str) and model.partition(":")[0] in PROVIDERS


def _checked_url(url: object, provider: Provider) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidParameterError(f"base_url must be a non-empty str, got {url!r}")
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameterError(f"base_url must be an http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise InvalidParameterError(
            "base_url must not hold credentials; set "
            f"{provider.key_variable or 'the API key variable'} instead"
        )
    if parts.query or parts.fragment:
        raise InvalidParameterError(f"base_url must have no query or fragment, got {url!r}")
    if provider.tier == "exact" and not parts.path.endswith("/v1"):
        url += "/v1"  # a keel server is named by its root, like KEEL_REMOTE_URL
    return url


def remote_target(model: str, base_url: object, current: Settings) -> RemoteTarget:
    """The target for a `PROVIDER:MODEL` name (is_remote(model) must hold)."""
    prefix, _, name = model.partition(":")
    provider = PROVIDERS[prefix]
    if not name.strip():
        raise InvalidParameterError(f"model {model!r} names no model after {prefix}:")
    url = base_url if base_url is not None else current.remote_url(provider.url_variable)
    url = url if url is not None else provider.default_url
    if url is None:
        raise InvalidParameterError(
            f"{prefix}: has no default server; set {provider.url_variable} or pass base_url="
        )
    return RemoteTarget(provider, name, _checked_url(url, provider))


def require_opt_in(target: RemoteTarget, unsafe_mode: bool, current: Settings) -> None:
    """Best-effort backends only when asked for, per call or per process."""
    if target.provider.tier == "exact" or unsafe_mode or current.unsafe_mode:
        return
    raise UnsafeModeRequiredError(
        f"{target.label} is a best-effort backend: the server does not promise the same "
        "text for the same seed, so keel can only make repeats steady through its cache. "
        "Pass unsafe_mode=True (--unsafe-mode on the command line) or set KEEL_UNSAFE_MODE=1 "
        "to use it; keel: servers need neither and are exact."
    )
