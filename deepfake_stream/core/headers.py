"""The one Kafka header codec: every stage, the shim and the tools read and write headers here."""

from __future__ import annotations

from collections.abc import Iterable

Headers = list[tuple[str, bytes]]


def decode_header(value: bytes | str | None) -> str:
    """One header key or value as text: undecodable bytes are replaced (U+FFFD) and a null
    value reads as empty, so no client's header can make a reader raise."""
    if isinstance(value, str):
        return value
    return (value or b"").decode("utf-8", "replace")


def parse_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as a str dict (last value wins), each value by :func:`decode_header`."""
    return {k: decode_header(v) for k, v in headers or ()}


def encode_headers(pairs: dict[str, str]) -> Headers:
    """A str dict as Kafka headers (UTF-8 values)."""
    return [(k, v.encode()) for k, v in pairs.items()]
