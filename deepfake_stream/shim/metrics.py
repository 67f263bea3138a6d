"""Prometheus metrics of the shim, and ``GET /metrics``.

The shim's own series (``deepfake_shim_*``) live in prometheus_client's default registry.
When the stream services' instrumentation (``deepfake_stream.core.metrics``) is installed, its
registry is exposed too, so one scrape of the shim shows both.
"""

from __future__ import annotations

import importlib
import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "deepfake_shim_requests",
    "HTTP requests answered by the shim, by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "deepfake_shim_request_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INFERENCE_SECONDS = Histogram(
    "deepfake_shim_inference_seconds",
    "In-process inference time of one predict_batch call in the shim, by model.",
    ["model_id"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
VERDICTS = Counter(
    "deepfake_shim_verdicts",
    "Verdicts the shim answered, by model, how they were scored (inprocess or stream) and label.",
    ["model_id", "via", "label"],
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def registries() -> list[CollectorRegistry]:
    """The default registry, plus the stream services' registry when that module exists."""
    found: list[CollectorRegistry] = [REGISTRY]
    try:
        module = importlib.import_module("deepfake_stream.core.metrics")
    except ModuleNotFoundError as exc:
        if exc.name != "deepfake_stream.core.metrics":
            raise
        return found
    for name in ("REGISTRY", "registry"):
        other = getattr(module, name, None)
        if isinstance(other, CollectorRegistry) and all(other is not r for r in found):
            found.append(other)
    return found


def render() -> bytes:
    return b"".join(generate_latest(r) for r in registries())


class MetricsMiddleware:
    """Counts and times every request by its route template (``/v1/models/{model_id}``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(route, scope.get("method", ""), str(status)).inc()
            REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
