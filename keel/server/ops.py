"""Operations routes: /health for load balancers and humans, /metrics for Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..config import settings
from ..loaded import loaded_models

router = APIRouter()


@router.get(
    "/health",
    responses={503: {"description": "The model is still loading, or failed to load"}},
)
async def health(request: Request) -> Any:
    """503 while the served model loads (or if it failed), then the loaded models with
    their batching self-check results and queue state."""
    state = request.app.state.loading
    if state["status"] != "ok":
        return JSONResponse(state, status_code=503)
    return {
        "status": "ok",
        "model": request.app.state.gateway.served,
        "queue_depth": settings().queue_depth,
        "models": [loaded.info() for loaded in loaded_models()],
    }


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
