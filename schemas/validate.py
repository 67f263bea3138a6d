"""Raw bytes to an input item, with every failure mapped to a contract ``dlq.reason``."""

from __future__ import annotations

import json

from pydantic import ValidationError

from deepfake_stream.errors import InvalidInput
from schemas.items import InputItem

# pydantic-core refuses JSON nested deeper than ~200 levels and cannot serialize much deeper
# nesting either; a deeply nested metadata would pass here and then fail in the router (which
# would re-read it forever) or in the worker. Reject it at the edge instead.
MAX_METADATA_DEPTH = 32


def _depth(value: object) -> int:
    """Nesting depth of JSON containers, without recursion (the input is untrusted)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest


def parse_input(raw: bytes | None, *, max_text_chars: int, max_message_bytes: int) -> InputItem:
    """Validate one ``detect.in`` message; raise :class:`InvalidInput` with the DLQ reason."""
    if raw is not None and len(raw) > max_message_bytes:
        raise InvalidInput(
            "too_large", f"message is {len(raw)} bytes; the limit is {max_message_bytes}"
        )
    if not raw:
        raise InvalidInput("invalid_json", "empty message: expected a JSON object")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput("invalid_json", f"message is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput("invalid_json", f"message is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("invalid_json", "message is JSON nested too deeply to parse") from None
    if not isinstance(doc, dict):
        raise InvalidInput("invalid_schema", f"expected a JSON object, got {type(doc).__name__}")
    text = doc.get("text")
    if isinstance(text, str) and len(text) > max_text_chars:
        raise InvalidInput(
            "too_large", f"text is {len(text)} characters; the limit is {max_text_chars}"
        )
    if _depth(doc.get("metadata")) > MAX_METADATA_DEPTH:
        raise InvalidInput(
            "invalid_schema", f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels"
        )
    try:
        return InputItem.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "item"
        raise InvalidInput(
            "invalid_schema", f"{where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from None
