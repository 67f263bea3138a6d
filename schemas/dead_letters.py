"""Dead letters: the original bytes with the contract's ``dlq.*`` headers, always small enough
to be produced.

A dead letter carries its original whole when it fits. When the original plus the headers
would exceed ``max_bytes`` (the producer's ``KAFKA_MAX_REQUEST_BYTES``, which the topics'
``max.message.bytes`` equals), the value is cut to fit and ``dlq.truncated`` gives the
original size: an uncut dead letter just over the limit could never be produced, so its
input's batch would fail and be re-read for ever.
"""

from __future__ import annotations

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.stage import Outgoing
from deepfake_stream.schemas.dead_letter import DeadLetter, DlqReason, DlqStage

TRUNCATED_HEADER = "dlq.truncated"
TRACE_ROOM_BYTES = 1_024
"""Kept free for the trace headers a stage puts on a dead letter after building it
(``tracing.with_trace``: a traceparent and a W3C tracestate of at most 512 characters)."""


def dead_letter(
    record: ConsumerRecord,
    *,
    topic: str,
    reason: DlqReason,
    stage: DlqStage,
    error: BaseException | str,
    max_bytes: int,
    attempts: int = 0,
    key: bytes | None = None,
    context: str = "",
) -> Outgoing:
    """``context`` is appended to the error message (e.g. which backends were tried)."""
    if isinstance(error, BaseException):
        error_class, message = type(error).__name__, str(error)
    else:
        error_class, message = "DetectError", error
    if context:
        message = f"{message} ({context})"
    letter = DeadLetter(
        reason=reason,
        stage=stage,
        error_class=error_class,
        error_message=message,
        original_topic=record.topic,
        original_partition=record.partition,
        original_offset=record.offset,
        attempts=attempts,
    )
    # Trace context rides along so a dead letter joins its item's trace.
    carried = [(k, v) for k, v in (record.headers or ()) if k in ("traceparent", "tracestate")]
    value = record.value if record.value is not None else b""
    key = key if key is not None else record.key
    headers = letter.headers() + carried
    value, headers = fit(key, value, headers, max_bytes)
    return Outgoing(topic=topic, value=value, key=key, headers=headers)


def fit(
    key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], max_bytes: int
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``value`` and ``headers``, the value cut (and ``dlq.truncated`` added) when the record
    would exceed ``max_bytes`` as the producer measures it (one record in its own batch),
    with room left for the trace headers."""
    max_bytes -= TRACE_ROOM_BYTES
    if _size(key, value, headers) <= max_bytes:
        return value, headers
    headers = [*headers, (TRUNCATED_HEADER, str(len(value)).encode())]
    room = max_bytes - _size(key, b"", headers)
    if room < 0:  # headers alone too big: cannot happen with the contract's bounded headers
        raise ValueError(f"dead-letter headers alone exceed {max_bytes} bytes")
    # The value's length prefix (a varint) grows by up to a few bytes with its size.
    return value[: max(0, room - 8)], headers


def _size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    # The very estimate aiokafka's producer checks against its max_request_size.
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    return size
