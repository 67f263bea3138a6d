"""Every message on every topic, as pydantic models (the edges of the system)."""

from schemas.dead_letter import DLQ_REASONS, DeadLetter, DlqReason, DlqStage, parse_headers
from schemas.items import BackendName, InputItem, RoutedItem, RoutingEnvelope
from schemas.validate import parse_input
from schemas.verdict import Revision, Span, Verdict, utc_now_iso

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
    "parse_headers",
    "parse_input",
    "utc_now_iso",
]
