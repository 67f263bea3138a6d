"""Dead letters: the original bytes, unchanged, with the contract's ``dlq.*`` headers."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from consumers.stage import Outgoing
from schemas.dead_letter import DeadLetter, DlqReason, DlqStage


def dead_letter(
    record: ConsumerRecord,
    *,
    topic: str,
    reason: DlqReason,
    stage: DlqStage,
    error: BaseException | str,
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
    return Outgoing(
        topic=topic,
        value=record.value if record.value is not None else b"",
        key=key if key is not None else record.key,
        headers=letter.headers() + carried,
    )
