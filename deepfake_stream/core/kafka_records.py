"""Fetched records whose header keys are not UTF-8 are read, not fatal.

Kafka header keys are strings on the wire, but nothing checks that: any librdkafka, Java or
Go producer can write a key that is not valid UTF-8. aiokafka decodes header keys strictly
while it unpacks a fetch, inside ``getmany()``, so one such record raised
``UnicodeDecodeError`` out of every consumer's poll, before any stage could dead-letter it,
and the same record was fetched again after each restart (a crash loop, and nothing behind
it on any partition ever moved).

:func:`install` makes the fetcher unpack record batches through :class:`TolerantMemoryRecords`:
batches are still decoded by aiokafka's C code, and only a batch that fails with
``UnicodeDecodeError`` is decoded again in Python with undecodable header-key bytes replaced
by U+FFFD, the same rule :func:`deepfake_stream.core.headers.parse_headers` applies to header
values. The record
then flows like any other (its odd header is ignored: no stage reads unknown headers), so it
gets exactly one verdict, or the dead letter its value deserves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import (
    DefaultRecordBatch,
    _DefaultRecordBatchPy,
    _DefaultRecordPy,
)
from aiokafka.record.memory_records import _MemoryRecordsPy
from aiokafka.record.util import decode_varint

from deepfake_stream.core.headers import decode_header

log = logging.getLogger(__name__)


class _LenientBatch(_DefaultRecordBatchPy):  # type: ignore[misc]  # subclasses Any: aiokafka has no types
    """aiokafka's pure-Python record batch; header keys decoded with ``errors="replace"``."""

    _pos: int  # the read position, set by aiokafka's __init__ (declared: it has no types)

    def _read_msg(self, decode_varint: Any = decode_varint) -> _DefaultRecordPy:
        # The record layout of aiokafka's _DefaultRecordBatchPy._read_msg (Kafka record v2);
        # only the header-key decoding differs.
        buffer = self._buffer
        pos = self._pos
        length, pos = decode_varint(buffer, pos)
        start_pos = pos
        _, pos = decode_varint(buffer, pos)  # attributes: unused in v2 records
        ts_delta, pos = decode_varint(buffer, pos)
        if self.timestamp_type == self.LOG_APPEND_TIME:
            timestamp = self.max_timestamp
        else:
            timestamp = self.first_timestamp + ts_delta
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _nullable_bytes(buffer, pos, decode_varint)
        value, pos = _nullable_bytes(buffer, pos, decode_varint)
        header_count, pos = decode_varint(buffer, pos)
        if header_count < 0:
            raise CorruptRecordException(f"Found invalid number of record headers {header_count}")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            h_key_len, pos = decode_varint(buffer, pos)
            if h_key_len < 0:
                raise CorruptRecordException(f"Invalid negative header key size {h_key_len}")
            h_key = decode_header(bytes(buffer[pos : pos + h_key_len]))
            pos += h_key_len
            h_value, pos = _nullable_bytes(buffer, pos, decode_varint)
            headers.append((h_key, h_value))
        if pos - start_pos != length:
            raise CorruptRecordException(
                f"Invalid record size: expected {length} bytes, read {pos - start_pos}"
            )
        self._pos = pos
        return _DefaultRecordPy(
            self.base_offset + offset_delta, timestamp, self.timestamp_type, key, value, headers
        )


def _nullable_bytes(buffer: bytearray, pos: int, decode_varint: Any) -> tuple[bytes | None, int]:
    size, pos = decode_varint(buffer, pos)
    if size < 0:
        return None, pos
    return bytes(buffer[pos : pos + size]), pos + size


class _TolerantBatch:
    """A v2 record batch (aiokafka's C implementation) that falls back to :class:`_LenientBatch`
    when a header key is not UTF-8. Everything but iteration is the C batch's."""

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        try:
            records = list(self._batch)  # one batch, already in memory
        except UnicodeDecodeError:
            log.warning(
                "record batch at offset %d has a header key that is not UTF-8; reading it "
                "with the undecodable bytes replaced",
                self._batch.base_offset,
            )
            records = list(_LenientBatch(bytes(self._raw)))
        return iter(records)


class TolerantMemoryRecords(_MemoryRecordsPy):  # type: ignore[misc]  # subclasses Any: aiokafka has no types
    """What the fetcher unpacks a fetched partition with (see the module docstring)."""

    def next_batch(self, *args: Any, **kwargs: Any) -> Any:
        raw = self._next_slice
        batch = super().next_batch(*args, **kwargs)
        if raw is not None and isinstance(batch, DefaultRecordBatch):
            return _TolerantBatch(batch, raw)
        return batch


def install() -> None:
    """Make every aiokafka consumer of this process unpack fetches tolerantly (idempotent)."""
    fetcher.MemoryRecords = TolerantMemoryRecords
