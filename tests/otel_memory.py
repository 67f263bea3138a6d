"""An in-memory span exporter installed once per test process (never from conftest.py).

OpenTelemetry's tracer provider is process-global, so every test shares one exporter and
picks its own spans by trace id."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deepfake_stream.core.telemetry import add_span_processor

_EXPORTER: InMemorySpanExporter | None = None


def memory_exporter() -> InMemorySpanExporter:
    global _EXPORTER
    if _EXPORTER is None:
        _EXPORTER = InMemorySpanExporter()
        add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


def spans_of_trace(trace_id: int) -> list[ReadableSpan]:
    return [s for s in memory_exporter().get_finished_spans() if s.context.trace_id == trace_id]


def traceparent_ids(traceparent: str) -> tuple[int, int]:
    """(trace id, span id) of a W3C traceparent."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)
