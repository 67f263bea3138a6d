"""Writing records our own clients never would: raw bytes as header keys, oversize values.

aiokafka's producer encodes header keys with ``str.encode("utf-8")`` (its C batch builder
rejects anything else), so a key that is not UTF-8 (which librdkafka, Java and Go producers
write without complaint) is written here through aiokafka's pure-Python batch builder, given
a ``str`` whose ``encode`` returns the raw bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from aiokafka import AIOKafkaProducer
from aiokafka.producer import message_accumulator
from aiokafka.producer import producer as aiokafka_producer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from deepfake_stream.core.settings import Settings
from deepfake_stream.core.topics import ensure_topics


class RawHeaderKey(str):
    """A header key written as ``raw`` bytes (placeholder text of the same length)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderKey:
        key = super().__new__(cls, "k" * len(raw))
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:  # type: ignore[override]
        return self.raw


@contextmanager
def python_batch_builder() -> Iterator[None]:
    """aiokafka's pure-Python builder (for sizing and building) while the block runs."""
    modules = (message_accumulator, aiokafka_producer)
    originals = [m.DefaultRecordBatchBuilder for m in modules]
    for m in modules:
        m.DefaultRecordBatchBuilder = _DefaultRecordBatchBuilderPy  # type: ignore[misc]
    try:
        yield
    finally:
        for m, original in zip(modules, originals, strict=True):
            m.DefaultRecordBatchBuilder = original  # type: ignore[misc]


Record = tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]


async def produce_raw(
    settings: Settings, records: Sequence[Record], *, topic: str | None = None
) -> None:
    """Each record (key, value, headers) in order, one partition, acks=all, no size limit of
    ours in the way (an outside producer's max.request.size is its own business)."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        max_request_size=16 << 20,
        max_batch_size=1 << 20,
    )
    with python_batch_builder():
        await producer.start()
        try:
            acks = [
                await producer.send(
                    topic or settings.topics.input,
                    value,
                    key=key,
                    headers=list(headers),
                    partition=0,
                )
                for key, value, headers in records
            ]
            await asyncio.gather(*acks)
        finally:
            await producer.stop()


def item(item_id: str, text: str | None = None, **fields: object) -> Record:
    doc = {"id": item_id, "text": text or f"An ordinary sentence about topic {item_id}.", **fields}
    return item_id.encode(), json.dumps(doc).encode(), []
