"""The pages a person opens in a browser: ``/`` (an index), ``/docs`` (Swagger UI) and
``/redoc``, all without a key and without the internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank offline or behind
a proxy. The same assets ship in the ``fastapi-offline`` wheel (MIT; Swagger UI and ReDoc
keep their own licences, named in the files' headers); they are served from there, so the
pages work wherever the shim does.
"""

from __future__ import annotations

import html
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

ASSETS_URL = "/docs-assets"
# name -> media type: only these files are served.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
PAGES = [
    ("/docs", "API reference with a “Try it out” button (Swagger UI)"),
    ("/redoc", "the same reference, as one readable page (ReDoc)"),
    ("/demo", "score pasted text in your own browser; the text never leaves the page"),
    ("/healthz", "the process is alive"),
    ("/readyz", "ready: broker answers, default model loaded, live backends"),
    ("/metrics", "Prometheus metrics"),
    ("/asyncapi", "AsyncAPI 3.0 document of every topic and message"),
]


def _asset(name: str) -> bytes:
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    items = "\n".join(
        f'<li><a href="{root}{path}">{path}</a>: {html.escape(what)}</li>' for path, what in PAGES
    )
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>deepfake-stream</title>"
        f'<link rel=icon href="{root}{ASSETS_URL}/favicon.png"></head>'
        "<body style='font-family:sans-serif;max-width:46em;margin:2em auto'>"
        "<h1>deepfake-stream</h1>"
        "<p>Detects AI-generated text. <code>POST /v1/detect</code> with "
        '<code>{"text": "..."}</code> answers a verdict: a score from 0 (human) to 1 (AI), '
        "the label at the model's threshold, and the model's version. Treat it as a signal to "
        "review, not proof.</p>"
        f"<ul>\n{items}\n</ul></body></html>"
    )


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        return Response(status_code=404)
    return Response(
        _asset(name),
        media_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )
