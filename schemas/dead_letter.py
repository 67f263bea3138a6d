"""Dead-letter headers (``detect.dlq``). The value is always the original bytes, unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deepfake_stream.core.headers import encode_headers
from deepfake_stream.schemas.verdict import utc_now_iso

DlqReason = Literal[
    "invalid_json",
    "invalid_schema",
    "too_large",
    "unknown_model",
    "all_backends_failed",
    "deadline_exceeded",
    "model_error",
    "no_live_backend",
]
DlqStage = Literal["router", "cpu", "gpu", "modal", "shim", "replay"]
DLQ_REASONS: tuple[str, ...] = DlqReason.__args__  # type: ignore[attr-defined]
MAX_ERROR_MESSAGE_CHARS = 1_000


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
