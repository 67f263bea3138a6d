"""OpenTelemetry setup: one tracer provider per process, named after the service's role.

Spans are always recorded (so the context carried in Kafka headers is the real span of each
hop), but exported only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: then an OTLP/HTTP
exporter sends them in batches to ``<endpoint>/v1/traces``. Tests add their own processor
(an ``InMemorySpanExporter``) with :func:`add_span_processor`.

The provider is process-global (OpenTelemetry allows setting it once), so services that run
in one process (tests, the in-process harness) share it; each span names its stage in the
``deepfake.stage`` attribute.
"""

from __future__ import annotations

import logging
import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from deepfake_stream.core.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAMESPACE = "deepfake-stream"
INSTRUMENTATION = "deepfake_stream"

_lock = threading.Lock()
_exporting_to: set[str] = set()


def _provider(role: str) -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    with _lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return current
        resource = Resource.create(
            {
                "service.name": f"{SERVICE_NAMESPACE}-{role}",
                "service.namespace": SERVICE_NAMESPACE,
                "service.instance.id": f"{os.uname().nodename}-{os.getpid()}",
                "deepfake.role": role,
            }
        )
        provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(provider)
        return provider


def setup_telemetry(settings: Settings, role: str) -> TracerProvider:
    """Install the process's tracer provider (once) and, when configured, the OTLP export.

    Idempotent: a second service in the same process reuses the provider, and an endpoint
    is exported to only once.
    """
    provider = _provider(role)
    endpoint = settings.telemetry.exporter_otlp_endpoint
    if endpoint:
        with _lock:
            if endpoint not in _exporting_to:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                url = endpoint.rstrip("/") + "/v1/traces"
                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
                _exporting_to.add(endpoint)
                log.info("exporting traces over OTLP/HTTP to %s", url)
    return provider


def add_span_processor(processor: SpanProcessor, role: str = "test") -> TracerProvider:
    """Attach a processor (tests: ``SimpleSpanProcessor(InMemorySpanExporter())``)."""
    provider = _provider(role)
    provider.add_span_processor(processor)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION)


def shutdown_telemetry() -> None:
    """Flush what is still buffered (called when a service stops)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.force_flush(timeout_millis=5_000)
