"""The span a hop starts when no span processor would see it: the same context the SDK would
give (trace id, flags, trace state, a fresh span id), so the headers carried on are unchanged;
with a processor attached, spans are recorded again."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from deepfake_stream.core.tracing import (
    _has_processors,
    _unrecorded_span,
    carrier_of,
    parent_context,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01", "tracestate": "vendor=x"}


def _fields(carrier: dict[str, str]) -> tuple[str, str, str, str]:
    _, trace_id, span_id, flags = carrier["traceparent"].split("-")
    return trace_id, span_id, flags, carrier.get("tracestate", "")


def _both(tracer, parent: dict[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    ctx = parent_context(parent)
    sdk = tracer.start_span("hop", context=ctx, kind=SpanKind.CONSUMER)
    fast = _unrecorded_span(tracer, "hop", ctx, SpanKind.CONSUMER, {"a": 1}, None)
    assert not fast.is_recording()
    return carrier_of(sdk), carrier_of(fast)


def test_continues_a_trace_exactly_like_the_sdk() -> None:
    tracer = TracerProvider().get_tracer("t")
    assert not _has_processors(tracer)
    sdk, fast = _both(tracer, PARENT)
    s_trace, s_span, s_flags, s_state = _fields(sdk)
    f_trace, f_span, f_flags, f_state = _fields(fast)
    assert (f_trace, f_flags, f_state) == (s_trace, s_flags, s_state)
    assert (f_trace, f_flags, f_state) == (TRACE_ID, "01", "vendor=x")
    assert f_span not in (s_span, "00f067aa0ba902b7") and len(f_span) == 16


def test_starts_a_trace_exactly_like_the_sdk() -> None:
    tracer = TracerProvider().get_tracer("t")
    sdk, fast = _both(tracer, None)
    assert _fields(fast)[2] == _fields(sdk)[2]  # sampled (+ random trace id where the SDK says)
    assert _fields(fast)[0] != _fields(sdk)[0]  # each a new trace


def test_follows_the_sampler() -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t")
    sdk, fast = _both(tracer, PARENT)
    assert _fields(fast)[2] == _fields(sdk)[2] == "00"


def test_a_processor_turns_recording_back_on() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert _has_processors(tracer)


def test_a_carrier_is_what_the_w3c_propagator_injects() -> None:
    import random

    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from opentelemetry.trace.propagation import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.trace.span import TraceState

    rng = random.Random(7)
    for i in range(500):
        state = TraceState([("vendor", "x"), ("k2", "y")]) if i % 3 == 0 else TraceState()
        flags = TraceFlags(rng.choice([0, 1, 2, 3]))  # sampled, random trace id, both, none
        ids = (rng.getrandbits(128) or 1, rng.getrandbits(64) or 1)
        span = NonRecordingSpan(
            SpanContext(*ids, is_remote=False, trace_flags=flags, trace_state=state)
        )
        injected: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(
            injected, context=set_span_in_context(span, Context())
        )
        assert carrier_of(span) == injected
    invalid = NonRecordingSpan(SpanContext(0, 0, is_remote=False))
    assert carrier_of(invalid) == {}
    assert carrier_of(invalid, PARENT) == PARENT  # passed on unchanged
