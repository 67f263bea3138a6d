"""Dead letters (``detect.dlq``): the schema of their ``dlq.*`` headers and the one emitter
every stage writes them with. The value is always the original bytes, unchanged.

A dead letter carries its original whole when it fits. When the original plus the headers
would exceed ``max_bytes`` (the producer's ``KAFKA_MAX_REQUEST_BYTES``, which the topics'
``max.message.bytes`` equals), the value is cut to fit and ``dlq.truncated`` gives the
original size: an uncut dead letter just over the limit could never be produced, so its
input's batch would fail and be re-read for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.errors import DlqReason as DlqReason  # named here for the messages
from deepfake_stream.core.headers import encode_headers
from deepfake_stream.core.stage import Outgoing
from deepfake_stream.core.tracing import TRACE_HEADERS
from deepfake_stream.schemas.items import BackendName
from deepfake_stream.schemas.verdict import utc_now_iso

DlqStage = Literal["router", BackendName, "shim", "replay"]
"""A nested Literal flattens: router, cpu, gpu, modal, shim, replay."""
DLQ_REASONS: tuple[DlqReason, ...] = get_args(DlqReason)
MAX_ERROR_MESSAGE_CHARS = 1_000
TRUNCATED_HEADER = "dlq.truncated"
DLQ_HEADERS: dict[str, str] = {
    "dlq.reason": " | ".join(DLQ_REASONS),
    "dlq.stage": " | ".join(get_args(DlqStage)),
    "dlq.error.class": "class name of the last error",
    "dlq.error.message": "the last error, one line, at most 1,000 characters, no stack trace",
    "dlq.original.topic": "topic the message was read from",
    "dlq.original.partition": "its partition",
    "dlq.original.offset": "its offset",
    "dlq.attempts": "how many backends were tried",
    "dlq.failed_at": "ISO 8601 time",
    TRUNCATED_HEADER: "only when the value was cut to fit the broker: the original size in bytes",
}
"""Every ``dlq.*`` header a dead letter may carry, and what it means (the AsyncAPI document
shows these)."""


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    reason: DlqReason
    stage: DlqStage
    error_class: str
    error_message: str
    original_topic: str
    original_partition: int
    original_offset: int
    attempts: int = 0

    def headers(self) -> list[tuple[str, bytes]]:
        """The contract's ``dlq.*`` headers, all UTF-8 strings."""
        pairs = {
            "dlq.reason": self.reason,
            "dlq.stage": self.stage,
            "dlq.error.class": self.error_class,
            # One line, bounded: operators read these in tail output, never stack traces.
            "dlq.error.message": " ".join(self.error_message.split())[:MAX_ERROR_MESSAGE_CHARS],
            "dlq.original.topic": self.original_topic,
            "dlq.original.partition": str(self.original_partition),
            "dlq.original.offset": str(self.original_offset),
            "dlq.attempts": str(self.attempts),
            "dlq.failed_at": utc_now_iso(),
        }
        return encode_headers(pairs)


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
    carried = [(k, v) for k, v in (record.headers or ()) if k in TRACE_HEADERS]
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
