"""Raw bytes to an input item, with every failure mapped to a contract ``dlq.reason``.

The one input codec: the router, replay, the producer client and the HTTP shim all read
client JSON through :func:`load_json` (and items through :func:`parse_input`), so a hostile
input gets the same answer whichever way it came in:

- not UTF-8, not JSON, ``NaN``/``Infinity`` (not JSON, though Python accepts them), or a lone
  surrogate escape in any string (``"\\ud800"``: no Unicode text, cannot be re-encoded)
  → ``invalid_json`` (HTTP 422);
- nested deeper than ``MAX_JSON_DEPTH`` anywhere, even inside a field consumers ignore
  → ``invalid_schema`` (HTTP 422);
- a text with no non-whitespace character → ``invalid_schema`` (HTTP 422).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from deepfake_stream.core.errors import InvalidInput
from deepfake_stream.schemas.items import InputItem

DEFAULT_MAX_JSON_DEPTH = 32
"""Default of ``MAX_JSON_DEPTH``: containers nested below the message's own object. pydantic-core
refuses JSON nested deeper than ~200 levels (the worker parses routed items with it), and
Python's parser fails at its recursion limit: what passes here must survive every hop."""


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_not_json)
"""Built once: ``json.loads`` with any option builds a new decoder per call (3% of the
router's CPU at saturation, py-spy 2026-12-04)."""


def _check(value: object, max_depth: int) -> None:
    """Nesting depth and lone surrogates, without recursion (the input is untrusted)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, str):
            if not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidInput(
                        "invalid_json", "a string holds a lone surrogate escape (not Unicode text)"
                    ) from None
            continue
        if isinstance(node, dict):
            children: list[object] = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            children = node
        else:
            continue
        if level > max_depth:
            raise InvalidInput(
                "invalid_schema", f"JSON is nested deeper than {max_depth} levels (MAX_JSON_DEPTH)"
            )
        stack.extend((child, level + 1) for child in children)


def load_json(raw: bytes, *, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Client JSON (UTF-8 bytes) to Python values; raise :class:`InvalidInput` with the reason."""
    try:
        doc = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput("invalid_json", f"message is not UTF-8: {exc}") from None
    except RecursionError:  # deeper than the parser goes, so deeper than any allowed depth
        raise InvalidInput(
            "invalid_schema", f"JSON is nested deeper than {max_json_depth} levels (MAX_JSON_DEPTH)"
        ) from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        raise InvalidInput("invalid_json", f"message is not JSON: {exc}") from None
    _check(doc, max_json_depth)
    return doc


def parse_input(
    raw: bytes | None,
    *,
    max_text_chars: int,
    max_message_bytes: int,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> InputItem:
    """Validate one ``detect.in`` message; raise :class:`InvalidInput` with the DLQ reason."""
    if raw is not None and len(raw) > max_message_bytes:
        raise InvalidInput(
            "too_large", f"message is {len(raw)} bytes; the limit is {max_message_bytes}"
        )
    if not raw:
        raise InvalidInput("invalid_json", "empty message: expected a JSON object")
    doc = load_json(raw, max_json_depth=max_json_depth)
    if not isinstance(doc, dict):
        raise InvalidInput("invalid_schema", f"expected a JSON object, got {type(doc).__name__}")
    text = doc.get("text")
    if isinstance(text, str) and len(text) > max_text_chars:
        raise InvalidInput(
            "too_large", f"text is {len(text)} characters; the limit is {max_text_chars}"
        )
    try:
        return InputItem.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "item"
        raise InvalidInput(
            "invalid_schema", f"{where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from None
