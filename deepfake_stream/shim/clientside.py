"""The client-side tier: tiny models exported for browsers, their scorer and a demo page.

``GET /v1/models/{id}/download`` serves a model whose kind declares a portable form
(``KIND.portable``, :class:`deepfake_stream.models.kinds.Portable`; today: ``tfidf``) as one
JSON document::

    {"model_id": "tiny-tfidf", "kind": "tfidf", "format": "deepfake-stream/tfidf@1",
     "version": "2026.11.1+sha256:ab12...", "threshold": 0.5, "sha256": "<64 hex>",
     "size_bytes": 1402217, "model": {<the artifact's model.json>}}

``model`` holds the artifact's ``model.json`` byte for byte (tokenisation rules, vocabularies,
idf, coefficients, intercept; see :mod:`deepfake_stream.models.detectors.tfidf`), always as the
last member, and ``sha256`` is the digest of exactly those bytes, the digest the artifact's
manifest lists. So a client can check what it got, and ``version`` equals the ``model_version``
on the stream's verdicts. Responses carry an ``ETag`` (``If-None-Match`` answers 304) and are
gzipped for clients that accept it. ``/static/tfidf-scorer.js`` is the dependency-free scorer
for it and ``/demo`` a page that scores pasted text in the visitor's own browser.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response

from deepfake_stream.core.errors import ArtifactIntegrityError, ConfigError, UnknownModel
from deepfake_stream.models.artifacts import artifact_dir, load_verified
from deepfake_stream.models.kinds import get_kind, known_kinds
from deepfake_stream.models.operating_points import resolve_operating_point
from deepfake_stream.models.registry import ModelConfig, Registry
from deepfake_stream.shim.errors import ApiError

__all__ = ["PortableModel", "export_portable", "public_router", "router"]

STATIC_FILES: dict[str, str] = {
    "tfidf-scorer.js": "text/javascript; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
# The demo runs only its own scripts; the model comes from this same origin.
DEMO_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["client-side"])
"""The model download; the shim mounts it behind its API key (and rate limit)."""
public_router = APIRouter(tags=["client-side"])
"""The demo page and the scorer: a browser opens them without a key."""


@dataclass(frozen=True, kw_only=True)
class PortableModel:
    """One model's download, encoded once and served from memory."""

    model_id: str
    version: str
    sha256: str
    body: bytes
    gzipped: bytes

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.body).hexdigest()[:32]}"'

    @property
    def etag_gzip(self) -> str:
        """Each encoding is its own representation, so it has its own tag."""
        return self.etag[:-1] + '-gzip"'


def export_portable(config: ModelConfig) -> PortableModel:
    """Build the download of ``config``'s model from its verified artifact.

    Raises :class:`LookupError` when the model's kind has no portable form, and
    :class:`~deepfake_stream.core.errors.ArtifactIntegrityError` when the artifact is missing or
    does not match its manifest.
    """
    try:
        portable = get_kind(config.kind).portable
    except ConfigError:  # a kind no module declares has no portable form either
        portable = None
    if portable is None or not config.artifact:
        raise LookupError(
            f"model {config.model_id!r} (kind {config.kind!r}) has no portable form; "
            f"models of kind {portable_kinds()} do"
        )
    manifest = load_verified(artifact_dir(config.artifact))
    raw = manifest.read_bytes(portable.file)  # re-checked against the manifest's sha256
    model = json.loads(raw)
    if portable.check is not None:
        portable.check(model)  # refuse to publish a model the reference scorer cannot read
    header: dict[str, Any] = {
        "model_id": config.model_id,
        "kind": config.kind,
        "format": model.get("format"),
        "version": manifest.versioned(config.version),
        "threshold": config.threshold,
        # A text under min_words is judged at this threshold (the default point's short texts'
        # one where it has one, else the same), on the client as on the stream.
        "short_threshold": resolve_operating_point(config, None, 0)[1],
        "min_words": config.min_words,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "size_bytes": len(raw),
    }
    # Splice the artifact's bytes in unchanged (and last), so "sha256" covers what is served.
    body = json.dumps(header, separators=(",", ":")).encode()[:-1] + b',"model":' + raw + b"}"
    return PortableModel(
        model_id=config.model_id,
        version=header["version"],
        sha256=header["sha256"],
        body=body,
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
    )


def portable_kinds() -> list[str]:
    """The known kinds that declare a portable form."""
    return [k for k in known_kinds() if get_kind(k).portable is not None]


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.shim.registry  # app.state's attributes are Any
    return registry


def _etag_matches(request: Request, *etags: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or not tags.isdisjoint(etags)


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def _portable(request: Request, model_id: str) -> PortableModel:
    try:
        config = _registry(request).resolve(model_id)
    except UnknownModel as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    cache: dict[str, PortableModel] | None = getattr(request.app.state, "portable_models", None)
    if cache is None:
        cache = request.app.state.portable_models = {}
    cached = cache.get(model_id)
    if cached is None:
        try:
            cached = await asyncio.to_thread(export_portable, config)
        except LookupError as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except (ArtifactIntegrityError, ValueError) as exc:
            raise ApiError(
                503, "model_unavailable", f"model {model_id!r} cannot be exported: {exc}"
            ) from None
        cache[model_id] = cached
    return cached


@router.get(
    "/v1/models/{model_id}/download",
    summary="Download a model in a portable JSON form, for client-side scoring",
    responses={
        200: {"description": "The portable model", "content": {"application/json": {}}},
        304: {"description": "Not modified (If-None-Match)"},
        404: {"description": "Unknown model, or a model without a portable form"},
    },
)
async def download(model_id: str, request: Request) -> Response:
    portable = await _portable(request, model_id)
    gzipped = _accepts_gzip(request)
    headers = {
        "ETag": portable.etag_gzip if gzipped else portable.etag,
        # Clients keep it and revalidate each time: a retrained model shows up at once.
        "Cache-Control": "private, no-cache",
        "Vary": "Accept-Encoding, X-API-Key",
        "X-Model-Version": portable.version,
        "Content-Disposition": f'inline; filename="{portable.model_id}.json"',
    }
    if _etag_matches(request, portable.etag, portable.etag_gzip):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(portable.gzipped, media_type="application/json", headers=headers)
    return Response(portable.body, media_type="application/json", headers=headers)


def _static(name: str) -> bytes:
    return resources.files("deepfake_stream.shim").joinpath("static", name).read_bytes()


def _static_response(request: Request, name: str, media_type: str, **headers: str) -> Response:
    data = _static(name)
    etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
    headers |= {"ETag": etag, "Cache-Control": "public, no-cache"}
    if _etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


@public_router.get("/demo", summary="Score pasted text in your own browser", include_in_schema=True)
async def demo(request: Request) -> Response:
    return _static_response(
        request,
        "demo.html",
        "text/html; charset=utf-8",
        **{"Content-Security-Policy": DEMO_CSP, "X-Content-Type-Options": "nosniff"},
    )


@public_router.get("/static/{name}", summary="The client-side scorer and the demo's assets")
async def static(name: str, request: Request) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", f"no static file {name!r}")
    return _static_response(request, name, media_type, **{"X-Content-Type-Options": "nosniff"})
