"""Model registry, location and identity (sha256)."""

from .digest import model_sha256
from .locate import ModelLocation, fetch_model, model_status, resolve_model
from .registry import REGISTRY, SIZES, ModelSpec

__all__ = [
    "REGISTRY",
    "SIZES",
    "ModelLocation",
    "ModelSpec",
    "fetch_model",
    "model_sha256",
    "model_status",
    "resolve_model",
]
