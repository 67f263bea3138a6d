"""Reading verdicts and dead letters as they arrive (``tail``, the demo, and tests).

Reads without a consumer group (every partition assigned) so it never takes partitions away
from moderation systems' groups and never commits anything.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from deepfake_stream.core.headers import parse_headers
from deepfake_stream.core.kafka import make_consumer
from deepfake_stream.core.settings import Settings


@dataclass(frozen=True)
class Arrival:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int

    def json(self) -> Any:
        return json.loads(self.value)


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    count: int | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    on_ready: Callable[[], None] | None = None,
) -> AsyncIterator[Arrival]:
    """Yield messages of ``topic``; stop after ``count``, ``timeout`` s, or ``idle_timeout`` s
    without a message. Without ``from_beginning`` only messages produced after the reader is
    positioned are yielded; ``on_ready`` is called at that moment."""
    consumer = make_consumer(
        settings,
        group_id=None,
        role="reader",
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await seek_to_true_end(consumer, tps)
        if on_ready is not None:
            on_ready()
        started = last = time.monotonic()
        seen = 0
        while True:
            now = time.monotonic()
            if timeout is not None and now - started > timeout:
                return
            if idle_timeout is not None and now - last > idle_timeout:
                return
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    last = time.monotonic()
                    yield Arrival(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key.decode("utf-8", "replace") if r.key else None,
                        r.value or b"",
                        parse_headers(r.headers or ()),
                        r.timestamp,
                    )
                    seen += 1
                    if count is not None and seen >= count:
                        return
    finally:
        await consumer.stop()


async def topic_partitions(consumer: Any, topic: str, wait: float = 10.0) -> set[int]:
    """Partition numbers of ``topic``, refreshing metadata until it appears (``wait`` s)."""
    deadline = time.monotonic() + wait
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"topic {topic} does not exist (start the services or run "
                "`deepfake-stream topics --apply`)"
            )
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)


async def seek_to_true_end(consumer: Any, tps: list[TopicPartition], wait: float = 5.0) -> None:
    """Position every partition after its last message.

    ``seek_to_end`` trusts the broker's ListOffsets answer, and Tansu (the embedded broker)
    answers the last *batch's* first offset + 1 instead of the log end, so a reader "from the
    end" re-read the tail of every batch (old verdicts printed as new on each start). Fetch
    responses carry the true high watermark: fetch once, discard what came (it was all there
    before we started) and move each partition to its high watermark.
    """
    await consumer.seek_to_end(*tps)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        await consumer.getmany(*tps, timeout_ms=100)
        if all(consumer.highwater(tp) is not None for tp in tps):
            break
    for tp in tps:
        end = consumer.highwater(tp)
        if end is not None and end > await consumer.position(tp):
            consumer.seek(tp, end)
