"""Trace context carried in Kafka headers (W3C ``traceparent``/``tracestate``).

Every item gets one trace id at its first sight (the router, or the producer that set a
``traceparent`` header); the routed item's envelope and every message produced for it carry
the same context, so one item's hops share one trace.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from aiokafka.structs import ConsumerRecord
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    get_current_span,
    get_tracer,
    get_tracer_provider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from deepfake_stream.core.headers import decode_header
from deepfake_stream.core.stage import Outgoing

INSTRUMENTATION = "deepfake_stream"

TRACE_HEADERS = ("traceparent", "tracestate")
CORRELATION_HEADER = "deepfake.correlation_id"
"""The id a ``?via=stream`` request is answered by: the shim sets it on the item, every hop
carries it on (routed items, verdicts, dead letters) and the shim matches replies by it,
never by the client's item id."""
CARRIED_HEADERS = (*TRACE_HEADERS, CORRELATION_HEADER)
"""What a carrier holds: the headers every message produced for an item carries on."""

# Values come from any client: only well-formed ones are carried on (W3C trace context level
# 1; tracestate at most 512 characters; a correlation id is a short token), so a malformed or
# huge header is dropped at the first hop instead of riding along every message.
_VALID = {
    "traceparent": re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"),
    "tracestate": re.compile(r"^[\x20-\x7e]{1,512}$"),
    CORRELATION_HEADER: re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
}


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _carried(headers: Iterable[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    """The well-formed carried headers among ``headers`` (last value wins)."""
    found: dict[str, str] = {}
    for k, v in headers or ():
        if k in _VALID and v:
            text = decode_header(v)
            if _VALID[k].match(text):
                found[k] = text
    return found


def trace_from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    found = _carried(headers)
    if "traceparent" not in found:
        found = {"traceparent": new_traceparent()}
    return found


def trace_headers(trace: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in trace.items() if k in CARRIED_HEADERS]


# --- real spans -------------------------------------------------------------------------
# Each hop starts a span whose parent is the context it received (Kafka headers, or the
# routed item's envelope) and carries *its own* span's context onward, so one item's spans
# form one trace: producer → router → worker (→ next backend on fallback) → verdict.

_W3C = TraceContextTextMapPropagator()
_tracers: dict[int, Tracer] = {}


def _tracer() -> Tracer:
    """This process's tracer, made once per tracer provider: ``get_tracer`` builds a new
    Tracer (and compares instrumentation scopes) on every call, which cost ~5% of a worker's
    CPU when called once per item."""
    provider = get_tracer_provider()
    found = _tracers.get(id(provider))
    if found is None:
        found = _tracers[id(provider)] = get_tracer(INSTRUMENTATION, tracer_provider=provider)
    return found


def headers_carrier(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """The W3C trace headers of a Kafka record as a str dict (empty when there are none)."""
    return _carried(headers)


def parent_context(carrier: dict[str, str] | None) -> Context:
    """The context a carrier names (an empty context, i.e. a new trace, when it names none)."""
    return _W3C.extract(carrier or {}, context=Context())


def carrier_of(span: Span, fallback: dict[str, str] | None = None) -> dict[str, str]:
    """The W3C carrier naming ``span``. A non-recording span (no SDK in this process) names
    nothing: then ``fallback`` (the context received) is passed on unchanged."""
    # What the W3C propagator's inject writes, formatted here: building a context to inject
    # from cost ~4 us per item per hop.
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return dict(fallback) if fallback and "traceparent" in fallback else {}
    carrier = {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"}
    if ctx.trace_state:
        carrier["tracestate"] = ctx.trace_state.to_header()
    if fallback and CORRELATION_HEADER in fallback:  # not trace context: carried on as is
        carrier[CORRELATION_HEADER] = fallback[CORRELATION_HEADER]
    return carrier


def start_hop_span(
    name: str,
    parent: dict[str, str] | None,
    *,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: dict[str, AttributeValue] | None = None,
    links: Sequence[Link] | None = None,
    start_time: int | None = None,
) -> Span:
    """Start (not enter) a span that continues the trace named by ``parent``; the caller ends
    it. Not made current: many items' spans are open at once within one batch."""
    tracer = _tracer()
    context = parent_context(parent)
    if not _has_processors(tracer):
        return _unrecorded_span(tracer, name, context, kind, attributes, links)
    return tracer.start_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        links=links,
        start_time=start_time,
    )


def _has_processors(tracer: Tracer) -> bool:
    """False only for an SDK tracer whose provider has no span processor (no exporter, no
    test processor): a recorded span would go nowhere. Anything unexpected counts as True."""
    processors = getattr(getattr(tracer, "span_processor", None), "_span_processors", None)
    enabled = getattr(tracer, "_is_enabled", None)
    if not callable(enabled) or not enabled():  # a disabled tracer: the SDK's own answer
        return True
    return not isinstance(processors, tuple) or bool(processors)


def _unrecorded_span(
    tracer: Tracer,
    name: str,
    context: Context,
    kind: SpanKind,
    attributes: dict[str, AttributeValue] | None,
    links: Sequence[Link] | None,
) -> Span:
    """The span context the SDK's ``start_span`` would give (same sampler decision, trace
    id, new span id, flags and trace state, so the headers carried on are exactly the same),
    without building a recording span nobody would see: that cost ~10% of a worker's and
    ~15% of the router's CPU, one span per item per hop."""
    sdk: Any = tracer
    parent = get_current_span(context).get_span_context()
    if not parent.is_valid:
        trace_id = sdk.id_generator.generate_trace_id()
        random_trace_id = sdk.id_generator.is_trace_id_random()
    else:
        trace_id = parent.trace_id
        random_trace_id = parent.trace_flags.random_trace_id
    sampled = sdk.sampler.should_sample(context, trace_id, name, kind, attributes, links or ())
    flags = TraceFlags.SAMPLED if sampled.decision.is_sampled() else TraceFlags.DEFAULT
    if random_trace_id:
        flags |= TraceFlags.RANDOM_TRACE_ID
    return NonRecordingSpan(
        SpanContext(
            trace_id,
            sdk.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=sampled.trace_state,
        )
    )


def link_to(span: Span) -> Link:
    return Link(span.get_span_context())


def with_trace(outgoing: Outgoing, carrier: dict[str, str]) -> Outgoing:
    """``outgoing`` with its trace headers replaced by ``carrier`` (e.g. a dead letter, which
    copies its input's headers, re-parented onto the span that dead-lettered it)."""
    if "traceparent" not in carrier:
        return outgoing
    kept = [(k, v) for k, v in outgoing.headers if k not in CARRIED_HEADERS]
    return replace(outgoing, headers=kept + trace_headers(carrier))


def fail_span(span: Span, reason: str, error: BaseException | str | None = None) -> None:
    span.set_attribute("deepfake.outcome", "dead_letter")
    span.set_attribute("deepfake.dlq.reason", reason)
    if isinstance(error, BaseException):
        span.record_exception(error, escaped=False)
    span.set_status(Status(StatusCode.ERROR, reason))


def record_attributes(record: ConsumerRecord, stage: str) -> dict[str, AttributeValue]:
    """OpenTelemetry messaging attributes of a consumed Kafka record."""
    attrs: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "deepfake.stage": stage,
    }
    if record.key is not None:
        attrs["messaging.kafka.message.key"] = record.key.decode("utf-8", "replace")
    return attrs
