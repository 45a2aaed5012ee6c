"""keel over HTTP: native JSON/SSE/WebSocket routes and an OpenAI-compatible API."""

from .app import create_app
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
