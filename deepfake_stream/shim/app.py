"""The shim's FastAPI app: ``create_app(settings)``.

Endpoints (OpenAPI at ``/docs``):

- ``POST /v1/detect``, ``POST /v1/detect/batch``: verdicts; ``?via=stream`` goes through
  the live pipeline instead of the in-process detectors.
- ``GET /v1/models``, ``GET /v1/models/{model_id}``: the registry and each model's state.
- ``GET /healthz`` (process alive), ``GET /readyz`` (broker, models, live backends),
  ``GET /metrics`` (Prometheus). These three need no API key; everything else does.

Middleware, outermost first: request id, body-size limit, metrics. Errors of any kind are
answered as ``{"error", "detail", "request_id"}`` and never carry a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepfake_stream.core.broker_probe import HINT, probe
from deepfake_stream.core.errors import UnknownModel
from deepfake_stream.core.liveness import LivenessView, now_ms
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.tracing import (
    carrier_of,
    headers_carrier,
    start_hop_span,
    trace_from_headers,
)
from deepfake_stream.models.base import Detector
from deepfake_stream.models.registry import Registry
from deepfake_stream.schemas import Verdict
from deepfake_stream.schemas.http import (
    BatchRequest,
    BatchResponse,
    DetectRequest,
    DetectResponse,
    ErrorBody,
    ModelInfo,
    ModelList,
)
from deepfake_stream.shim import docs_pages, metrics
from deepfake_stream.shim.audit import AuditMiddleware, note, text_digest
from deepfake_stream.shim.auth import (
    Principal,
    RateLimiter,
    parse_keys,
    parse_principals,
    require_api_key,
)
from deepfake_stream.shim.codec import CodecRoute
from deepfake_stream.shim.errors import ApiError, RequestIdMiddleware, error_body
from deepfake_stream.shim.history import StoreLink, history_routes, principal
from deepfake_stream.shim.limits import BodyLimitMiddleware
from deepfake_stream.shim.scoring import InProcessScorer, Plan
from deepfake_stream.shim.sentences import sentence_spans
from deepfake_stream.shim.via_stream import StreamLink
from deepfake_stream.store.audit import AuditWriter

log = logging.getLogger("deepfake_stream.shim")
Via = Literal["inprocess", "stream"]
ViaParam = Annotated[
    Via,
    Query(description="inprocess (default: lowest latency) or stream (through the live pipeline)"),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "missing or wrong X-API-Key",
        403: "the API key is bound to another tenant, or is not an admin key (/v1/audit)",
        404: "unknown model, or no verdict or dead letter for this id",
        413: "body over HTTP_MAX_BODY_BYTES, or text over MAX_TEXT_CHARS",
        422: "malformed JSON (invalid_json), a body that does not fit the schema "
        "(invalid_request, invalid_schema), or detailed: true over HTTP_DETAILED_MAX_SENTENCES",
        429: "rate limit exceeded, or too many failed API keys from this address; see Retry-After",
        502: "the model failed, or the stream dead-lettered the item",
        503: "the model, the stream or the verdict store is unavailable",
        504: "?via=stream: no verdict within HTTP_STREAM_TIMEOUT_S",
    }.items()
}


@dataclass(kw_only=True)
class ShimState:
    """Everything the endpoints share; ``app.state.shim``."""

    settings: Settings
    registry: Registry
    scorer: InProcessScorer
    stream: StreamLink
    liveness: LivenessView
    limiter: RateLimiter
    auth_failures: RateLimiter
    """Failed API-key attempts per client address (HTTP_AUTH_FAIL_RPS/BURST)."""
    api_keys: tuple[bytes, ...]
    store: StoreLink
    principals: tuple[Principal, ...] = ()
    connect_kafka: bool = True
    connect_store: bool = True
    kafka_connected: bool = False
    broker_problem: str = "the shim has not reached the broker yet"
    """Why the shim is not connected to the broker (the last probe's reason), for the 503
    that ``?via=stream`` answers meanwhile."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def alive(self, backend: str, model_id: str) -> bool:
        return self.kafka_connected and self.liveness.alive(backend, model_id)

    async def connect(self) -> None:
        """Connect to the broker in the background, retrying: the in-process path works
        without Kafka, so the shim serves while the broker is still starting."""
        delay = 0.5
        while True:
            # Probe first (a Kafka handshake, as every broker command asks): a Kafka client
            # that cannot bootstrap logs loudly and lingers.
            found = await probe(self.settings)
            if found.state != "kafka":
                self.broker_problem = found.reason
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            try:
                await self.liveness.start()
                try:
                    await self.stream.start()
                except BaseException:
                    await self.liveness.stop()
                    raise
                self.kafka_connected = True
                log.info("shim connected to %s", self.settings.kafka.bootstrap_servers)
                return
            except Exception as exc:
                self.broker_problem = (
                    f"the broker at {self.settings.kafka.bootstrap_servers} did not accept the "
                    f"shim's clients ({type(exc).__name__}: {exc})"
                )
                log.warning("broker not reachable yet (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    detectors: dict[str, Detector] | None = None,
    connect_kafka: bool = True,
    connect_store: bool | None = None,
) -> FastAPI:
    """The shim app. ``detectors`` (tests) replace the shim's own loading for those models;
    ``connect_kafka=False`` serves in-process only (unit tests, no broker);
    ``connect_store`` (default: as ``connect_kafka``) connects the verdict store and the
    audit log."""
    if registry is None:
        from deepfake_stream.models.registry import registry_for

        registry = registry_for(settings)
    liveness = LivenessView(settings)
    state = ShimState(
        settings=settings,
        registry=registry,
        scorer=InProcessScorer(
            settings, registry, alive=lambda b, m: state.alive(b, m), detectors=detectors
        ),
        stream=StreamLink(settings),
        liveness=liveness,
        limiter=RateLimiter(settings.http.rate_limit_rps, settings.http.rate_limit_burst),
        auth_failures=RateLimiter(settings.http.auth_fail_rps, settings.http.auth_fail_burst),
        api_keys=parse_keys(settings),
        principals=parse_principals(settings),
        store=StoreLink(
            settings=settings,
            audit=AuditWriter(
                queue_size=settings.database.audit_queue_size,
                retry_max_s=settings.database.connect_retry_max_s,
            ),
        ),
        connect_kafka=connect_kafka,
        connect_store=connect_kafka if connect_store is None else connect_store,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.scorer.start()
        if state.connect_kafka:
            state.tasks.append(asyncio.create_task(state.connect(), name="shim-connect"))
        if state.connect_store:
            state.store.start()
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
            if state.kafka_connected:
                await state.stream.stop()
                await state.liveness.stop()
            await state.scorer.stop()
            await state.store.stop()

    app = FastAPI(
        title="deepfake-stream",
        summary="Detect AI-generated text: HTTP shim over the deepfake-stream pipeline.",
        version="1",
        lifespan=lifespan,
        responses=ERRORS,
        # /docs and /redoc come from docs_pages: assets shipped with the package, not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.shim = state
    app.add_middleware(metrics.MetricsMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.http.max_body_bytes)
    app.add_middleware(AuditMiddleware, writer=state.store.audit)
    app.add_middleware(RequestIdMiddleware)
    _install_error_handlers(app)
    app.include_router(_public_routes())
    app.include_router(_api_routes(), dependencies=[Depends(require_api_key)])
    app.include_router(history_routes(), dependencies=[Depends(require_api_key)])
    _include_clientside(app)
    app.include_router(docs_pages.router)
    return app


def _include_clientside(app: FastAPI) -> None:
    """Hook for the client-side tier (``deepfake_stream/shim/clientside.py``, optional).

    Its ``router`` (model download, ...) is mounted behind the API key; an optional
    ``public_router`` (the demo page a person opens in a browser) is mounted without it.
    """
    try:
        module = importlib.import_module("deepfake_stream.shim.clientside")
    except ModuleNotFoundError as exc:
        if exc.name != "deepfake_stream.shim.clientside":
            raise
        return
    if isinstance(getattr(module, "router", None), APIRouter):
        app.include_router(module.router, dependencies=[Depends(require_api_key)])
    if isinstance(getattr(module, "public_router", None), APIRouter):
        app.include_router(module.public_router)


def _state(request: Request) -> ShimState:
    state: ShimState = request.app.state.shim  # app.state's attributes are Any
    return state


def _error(
    request: Request, status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
) -> Response:
    rid = str(getattr(request.state, "request_id", "-"))
    return Response(
        error_body(code, detail, rid),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(request, exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return _error(request, exc.status_code, code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # loc/msg/type only: pydantic's "input" and "ctx" would echo the body back.
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return _error(request, 422, "invalid_request", problems)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.error("request %s failed", getattr(request.state, "request_id", "-"), exc_info=exc)
        detail = "internal error; quote the request id when reporting it"
        return _error(request, 500, "internal_error", detail)


def _public_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", tags=["operations"], summary="Broker, models and live backends")
    async def readyz(request: Request) -> JSONResponse:
        state = _state(request)
        broker = (await probe(state.settings, 0.5)).state == "kafka"
        default = state.registry.default_model
        loaded = state.scorer.loaded()
        body = {
            "ready": broker and default in loaded,
            "broker": broker,
            "stream_connected": state.kafka_connected and state.stream.ready,
            "default_model": default,
            "models_loaded": loaded,
            "live_backends": state.liveness.live_backends() if state.kafka_connected else {},
            # The history endpoints answer 503 until the verdict store's database is reachable
            # and migrated; detection does not wait for it, so it does not gate "ready".
            "store": state.store.ready,
        }
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @router.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    @router.get(
        "/asyncapi",
        tags=["operations"],
        summary="AsyncAPI 3.0 document of every topic and message (docs/asyncapi.yaml)",
    )
    async def asyncapi(request: Request) -> dict[str, Any]:
        from deepfake_stream.asyncapi import asyncapi_document

        # Documentation, like /docs: public, and named after this deployment's topics.
        return asyncapi_document(_state(request).settings.topics)

    return router


def _api_routes() -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=CodecRoute)

    @router.post(
        "/detect", tags=["detect"], response_model=DetectResponse, summary="Score one text"
    )
    async def detect(
        body: DetectRequest, request: Request, via: ViaParam = "inprocess"
    ) -> Response:
        [answer] = await _detect_many(_state(request), [body], request, via)
        return JSONResponse(answer)

    @router.post(
        "/detect/batch",
        tags=["detect"],
        response_model=BatchResponse,
        summary="Score up to HTTP_BATCH_MAX_TEXTS texts",
    )
    async def detect_batch(
        body: BatchRequest, request: Request, via: ViaParam = "inprocess"
    ) -> Response:
        state = _state(request)
        limit = state.settings.http.batch_max_texts
        if len(body.items) > limit:
            raise ApiError(
                422,
                "too_many_items",
                f"{len(body.items)} items; at most {limit} per batch (HTTP_BATCH_MAX_TEXTS)",
            )
        answers = await _detect_many(state, body.items, request, via)
        return JSONResponse({"verdicts": answers})

    @router.get("/models", tags=["models"], response_model=ModelList, summary="Registered models")
    async def list_models(request: Request) -> ModelList:
        state = _state(request)
        return ModelList(
            default=state.registry.default_model,
            models=[_model_info(state, m) for m in state.registry.models],
        )

    @router.get("/models/{model_id}", tags=["models"], response_model=ModelInfo)
    async def get_model(model_id: str, request: Request) -> ModelInfo:
        state = _state(request)
        try:
            state.registry.resolve(model_id)  # its error names a retired model as retired
        except UnknownModel as exc:
            raise ApiError(404, "unknown_model", str(exc)) from None
        return _model_info(state, model_id)

    return router


def _model_info(state: ShimState, model_id: str) -> ModelInfo:
    config = state.registry.models[model_id]
    detector = state.scorer.detectors.get(model_id)
    loaded = detector is not None and detector.ready
    return ModelInfo(
        id=model_id,
        kind=config.kind,
        size=config.size,
        version=detector.version if detector is not None and loaded else config.version,
        threshold=config.threshold,
        backends=list(config.chain),
        default=model_id == state.registry.default_model,
        loaded_in_shim=loaded,
        live_backends=[b for b in config.chain if state.alive(b, model_id)],
    )


async def _detect_many(
    state: ShimState, bodies: list[DetectRequest], request: Request, via: Via
) -> list[dict[str, Any]]:
    """Verdicts for ``bodies`` in order: in-process items of one model scored as one batch,
    stream items awaited concurrently."""
    bodies = _bind_tenant(principal(request), bodies)
    first_seen = now_ms()
    request_headers = [(k, v.encode()) for k, v in request.headers.items()]
    received = headers_carrier(request_headers)
    # The item's trace starts (or, with a client traceparent, continues) at the shim: its
    # span is the parent of the router's when the item goes through the stream.
    # FastAPI may already record a server span for the request (current here); nest under it.
    current = get_current_span()
    framework = current.get_span_context().is_valid and not received
    span = start_hop_span(
        f"shim {request.url.path}",
        carrier_of(current) if framework else received,
        kind=SpanKind.INTERNAL if framework else SpanKind.SERVER,
        attributes={
            "http.request.method": request.method,
            "url.path": request.url.path,
            "deepfake.items": len(bodies),
            "deepfake.via": via or "inprocess",
        },
    )
    note(request, texts=[text_digest(b.text) for b in bodies])
    try:
        answers = await _detect_traced(
            state, bodies, via, first_seen, carrier_of(span, trace_from_headers(request_headers))
        )
        note(
            request,
            verdict_ids=[a["id"] for a in answers],
            model_id=",".join(sorted({a["model_id"] for a in answers})),
        )
        return answers
    except ApiError as exc:
        span.set_attribute("http.response.status_code", exc.status)
        span.set_status(Status(StatusCode.ERROR, exc.code))
        raise
    finally:
        span.end()


def stream_unavailable(state: ShimState) -> ApiError:
    """The 503 of ``?via=stream`` while the shim has no broker: what was tried, what to do
    (as the CLI says it), and that the in-process path still answers."""
    if state.kafka_connected:  # connected a moment ago; the reply reader is starting
        return ApiError(
            503, "stream_unavailable", "?via=stream is still connecting; retry in a moment"
        )
    if not state.connect_kafka:
        why = "this shim was started without the broker (in-process scoring only)"
    else:
        why = state.broker_problem
    return ApiError(
        503,
        "stream_unavailable",
        f"?via=stream needs the Kafka broker and {why}; {HINT} (the shim connects as soon "
        "as one answers there); or leave out ?via=stream to score in the shim itself",
    )


def _bind_tenant(who: Principal, bodies: list[DetectRequest]) -> list[DetectRequest]:
    """A tenant-bound key writes only its own tenant: unset becomes its tenant, another
    tenant is refused (403) before anything is scored or published."""
    if who.tenant is None:
        return bodies
    if any(b.tenant is not None and b.tenant != who.tenant for b in bodies):
        raise ApiError(403, "forbidden_tenant", "this API key is bound to another tenant")
    return [
        b if b.tenant == who.tenant else b.model_copy(update={"tenant": who.tenant}) for b in bodies
    ]


async def _detect_traced(
    state: ShimState,
    bodies: list[DetectRequest],
    via: Via,
    first_seen: int,
    trace: dict[str, str],
) -> list[dict[str, Any]]:
    stream_ready = state.kafka_connected and state.stream.ready
    if via == "stream" and not stream_ready:
        raise stream_unavailable(state)
    plans = [
        state.scorer.plan(b, b.id or f"shim-{uuid.uuid4().hex}", stream_ready=stream_ready)
        for b in bodies
    ]
    detail = await _sentences_within_budget(state, bodies, plans)
    verdicts: dict[int, Verdict] = {}
    timeout = state.settings.http.stream_timeout_s
    jobs: list[asyncio.Future[Any]] = []
    by_model: dict[str, list[int]] = {}
    for i, plan in enumerate(plans):
        if via == "stream" or plan.via_stream:
            jobs.append(
                asyncio.ensure_future(_from_stream(state, plan, trace, timeout, i, verdicts))
            )
        else:
            by_model.setdefault(plan.config.model_id, []).append(i)
    for indices in by_model.values():
        group = [plans[i] for i in indices]
        scored = await state.scorer.score(group, first_seen_ms=first_seen, trace=trace)
        verdicts.update(zip(indices, scored, strict=True))
    try:
        await asyncio.gather(*jobs)
    finally:
        for job in jobs:
            job.cancel()
    answers = []
    for i, (body, plan) in enumerate(zip(bodies, plans, strict=True)):
        verdict = verdicts[i]
        answer = verdict.model_dump(mode="json")
        if body.detailed:
            sentences = await state.scorer.sentences(plan.item.text, plan.config, detail[i], trace)
            answer["sentences"] = [s.model_dump() for s in sentences]
        how = "stream" if via == "stream" or plan.via_stream else "inprocess"
        metrics.VERDICTS.labels(verdict.model_id, how, verdict.label).inc()
        answers.append(answer)
    return answers


async def _sentences_within_budget(
    state: ShimState, bodies: list[DetectRequest], plans: list[Plan]
) -> dict[int, list[tuple[int, int]]]:
    """Sentence spans of each ``detailed`` item, split off the event loop; 422 before any
    inference when the request asks for more than HTTP_DETAILED_MAX_SENTENCES in all (one
    inference per sentence: a 1 MB body once asked for 343,000)."""
    wanted = [i for i, body in enumerate(bodies) if body.detailed]
    if not wanted:
        return {}
    texts = [plans[i].item.text for i in wanted]
    limit = state.settings.http.detailed_max_sentences

    def split() -> list[list[tuple[int, int]]]:
        found: list[list[tuple[int, int]]] = []
        for text in texts:  # stops splitting as soon as the request is over its budget
            found.append(sentence_spans(text, limit - sum(len(s) for s in found)))
            if sum(len(s) for s in found) > limit:
                break
        return found

    spans = await asyncio.to_thread(split)
    total = sum(len(s) for s in spans)
    if total > limit:
        raise ApiError(
            422,
            "too_many_sentences",
            f"detailed: true asks for more than {limit} sentence scores, the most one request "
            "may ask for (HTTP_DETAILED_MAX_SENTENCES): send fewer or shorter texts, or no detail",
        )
    return dict(zip(wanted, spans, strict=True))


async def _from_stream(
    state: ShimState,
    plan: Plan,
    trace: dict[str, str],
    timeout: float,
    index: int,
    out: dict[int, Verdict],
) -> None:
    started = time.perf_counter()
    out[index] = await state.stream.request(plan.item, trace, timeout)
    log.debug(
        "stream verdict for %s in %.1f ms", plan.item.id, (time.perf_counter() - started) * 1e3
    )
