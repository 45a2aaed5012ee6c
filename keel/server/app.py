"""The FastAPI application: routes, error shapes, guards, metrics and the startup load."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from ..loaded import load_location
from ..models import resolve_model
from ..remote import is_remote
from . import errors, native, openai_api, ops, ui
from .config import ServerConfig
from .gateway import Gateway
from .guard import GuardMiddleware
from .metrics import Metrics, MetricsMiddleware


def _load_in_background(app: FastAPI, model: str) -> None:
    """Load the served model off the event loop, so /health can answer 503 meanwhile."""

    def load() -> None:
        try:
            load_location(resolve_model(model))
            app.state.loading = {"status": "ok"}
        except Exception as exc:  # reported by /health; requests get their own error
            app.state.loading = {"status": "error", "message": str(exc)}

    threading.Thread(target=load, name="keel-preload", daemon=True).start()


def create_app(config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if is_remote(config.model):
            app.state.loading = {"status": "ok"}  # a remote model has nothing to load
        else:
            _load_in_background(app, config.model)
        yield

    app = FastAPI(
        title="keel",
        version=version("keel-text"),
        description="Deterministic text generation with local GGUF models.",
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.metrics = metrics
    app.state.gateway = Gateway(config, metrics)
    app.state.loading = {"status": "loading", "model": app.state.gateway.served}
    errors.install(app)
    for module in (native, openai_api, ops):
        app.include_router(module.router)
    if config.ui:
        ui.install(app)
    app.add_middleware(
        GuardMiddleware,
        api_key=config.api_key,
        max_body_bytes=config.max_body_bytes,
        body_timeout=config.body_timeout,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
