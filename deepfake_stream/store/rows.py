"""Kafka records -> store rows. Pure functions: no database, no broker.

A verdict row keeps the known fields as columns and the whole message as JSON (``body``),
so fields added to the Verdict schema later are never lost. A dead letter row keeps the
``dlq.*`` headers and the SHA-256 and length of the original bytes, never the bytes (they
may hold the text).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.headers import parse_headers


def clean(value: Any) -> Any:
    """What any database accepts: no NUL (PostgreSQL rejects it in text) and no lone
    surrogate (not encodable as UTF-8), in every string of a decoded JSON document. A client
    controls these bytes; one odd character must never stall the store."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return value
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def _document(raw: bytes | None) -> Any:
    """The JSON document in ``raw``, cleaned; None when it is not JSON (or absurdly deep)."""
    try:
        return clean(json.loads(raw or b""))
    except (ValueError, TypeError, RecursionError):
        return None


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (``...Z`` included) -> aware UTC datetime; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _str(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text_length_of(verdict: dict[str, Any]) -> int | None:
    """The scored text's length when the verdict carries one (``text_length``, else the
    whole-text ``scored_chars``); the verdict never carries the text itself."""
    for name in ("text_length", "scored_chars"):
        if (n := _int(verdict.get(name))) is not None:
            return n
    return None


def verdict_row(record: ConsumerRecord, now: datetime) -> dict[str, Any] | None:
    """None for a message that is not a verdict (logged by the caller, never stored)."""
    v = _document(record.value)
    if not isinstance(v, dict) or not isinstance(v.get("id"), str):
        return None
    score = _num(v.get("score"))
    scored_at = parse_time(v.get("scored_at")) or datetime.fromtimestamp(
        record.timestamp / 1000, UTC
    )
    if score is None or not isinstance(v.get("model_id"), str):
        return None
    fallback = v.get("fallback_from")
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "item_id": v["id"][:128],
        "tenant": _str(v.get("tenant"), 255),
        "model_id": v["model_id"][:128],
        "model_version": _str(v.get("model_version"), 255) or "",
        "score": score,
        "label": _str(v.get("label"), 16) or "",
        "threshold": _num(v.get("threshold")),
        "operating_point": _str(v.get("operating_point"), 64),
        "confidence": _str(v.get("confidence"), 16),
        "revises": v.get("revises") if isinstance(v.get("revises"), dict) else None,
        "text_sha256": _str(v.get("text_sha256"), 64),
        "text_length": text_length_of(v),
        "backend": _str(v.get("backend"), 16),
        "fallback_from": fallback if isinstance(fallback, list) else [],
        "attempts": _int(v.get("attempts")),
        "replay": v.get("replay") is True,
        "scored_at": scored_at,
        "inserted_at": now,
        "body": v,
    }


def dead_letter_row(record: ConsumerRecord, now: datetime) -> dict[str, Any]:
    """Every dead letter is stored, whatever its bytes: id and tenant when they parse."""
    value: bytes = record.value or b""
    headers = clean(parse_headers(record.headers or []))
    item_id = tenant = None
    doc = _document(value)
    if isinstance(doc, dict):
        item_id = _str(doc.get("id"), 128)
        tenant = _str(doc.get("tenant"), 255)
    if item_id is None and record.key:
        item_id = clean(record.key.decode("utf-8", "replace"))[:128]

    def number(name: str) -> int | None:
        try:
            return int(headers[name])
        except (KeyError, ValueError):
            return None

    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "item_id": item_id,
        "tenant": tenant,
        "reason": _str(headers.get("dlq.reason"), 64),
        "stage": _str(headers.get("dlq.stage"), 32),
        "error_class": _str(headers.get("dlq.error.class"), 255),
        "error_message": headers.get("dlq.error.message"),
        "original_topic": _str(headers.get("dlq.original.topic"), 255),
        "original_partition": number("dlq.original.partition"),
        "original_offset": number("dlq.original.offset"),
        "attempts": number("dlq.attempts"),
        "failed_at": parse_time(headers.get("dlq.failed_at"))
        or datetime.fromtimestamp(record.timestamp / 1000, UTC),
        "value_sha256": hashlib.sha256(value).hexdigest(),
        "value_length": len(value),
        "headers": {k: v for k, v in headers.items() if k.startswith("dlq.")},
        "inserted_at": now,
    }
