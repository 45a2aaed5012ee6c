"""Model registry, location and identity (sha256)."""

from .digest import model_sha256
from .locate import ModelLocation, resolve_model
from .registry import REGISTRY, SIZES, ModelSpec

__all__ = ["REGISTRY", "SIZES", "ModelLocation", "ModelSpec", "model_sha256", "resolve_model"]
