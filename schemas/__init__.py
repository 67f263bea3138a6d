"""Every message on every topic, as pydantic models (the edges of the system)."""

from deepfake_stream.schemas.dead_letter import (
    DLQ_REASONS,
    DeadLetter,
    DlqReason,
    DlqStage,
)
from deepfake_stream.schemas.items import BackendName, InputItem, RoutedItem, RoutingEnvelope
from deepfake_stream.schemas.validate import parse_input
from deepfake_stream.schemas.verdict import Revision, Span, Verdict, utc_now_iso

__all__ = [
    "DLQ_REASONS",
    "BackendName",
    "DeadLetter",
    "DlqReason",
    "DlqStage",
    "InputItem",
    "Revision",
    "RoutedItem",
    "RoutingEnvelope",
    "Span",
    "Verdict",
    "parse_input",
    "utc_now_iso",
]
