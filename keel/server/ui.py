"""The playground (GET /): a static page shipped in the package, with this server's
defaults and limits written into it, so the form starts where the API starts. The page
loads nothing from other origins, and its Content-Security-Policy says so."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ..events import KEEL_VERSION
from ..params import DEFAULT_MAX_NEW_TOKENS, PARAMETERS
from .gateway import Gateway

UI_DIRECTORY = Path(__file__).with_name("ui")
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# the form's fields: each starts at the library's default
_FIELDS = ("temperature", "seed", "top_p", "top_k", "min_p", "top_logprobs")

router = APIRouter(include_in_schema=False)


@cache
def _page_template() -> str:
    return (UI_DIRECTORY / "index.html").read_text()


def _page_settings(gateway: Gateway) -> dict[str, Any]:
    defaults = {name: PARAMETERS[name].default for name in _FIELDS}
    defaults["max_new_tokens"] = min(DEFAULT_MAX_NEW_TOKENS, gateway.config.max_tokens)
    return {
        "version": KEEL_VERSION,
        "model": gateway.served,
        "max_tokens": gateway.config.max_tokens,
        "defaults": defaults,
    }


@router.get("/", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    settings = json.dumps(_page_settings(request.app.state.gateway)).replace("</", "<\\/")
    return HTMLResponse(
        _page_template().replace("{{KEEL_SETTINGS}}", settings),
        headers={"Content-Security-Policy": _POLICY, "Cache-Control": "no-cache"},
    )


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=UI_DIRECTORY), name="ui")
