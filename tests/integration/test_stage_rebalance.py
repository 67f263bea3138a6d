"""Rebalances while a batch is being collected: no record is handled twice (the stage as the
services run it, in FastStream's loop).

A record fetched under one assignment and handled after a rebalance gave the partition back
to the same consumer would be handled, committed, and then fetched again: the new assignment
starts every partition at the offset committed when it was made, before that batch's commit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.stage import BatchResult, StageRunner
from deepfake_stream.core.stage_app import serve_stage
from deepfake_stream.core.topics import ensure_topics
from tests.conftest import unique_settings
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # three 10 s rebalance rounds


class Seen:
    def __init__(self, name: str, into: Counter[tuple[int, int]]) -> None:
        self.name = name
        self.into = into

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        for r in records:
            self.into[(r.partition, r.offset)] += 1
        await asyncio.sleep(0.05)
        return BatchResult()


async def test_rebalances_during_collect_handle_no_record_twice(kafka_bootstrap: str) -> None:
    settings = unique_settings(kafka_bootstrap)
    await ensure_topics(settings)
    topic = settings.topics.backend("cpu")
    group = f"{settings.kafka.group_prefix}.rebalance"
    seen: Counter[tuple[int, int]] = Counter()
    producer: AIOKafkaProducer = make_producer(settings, role="test")
    await producer.start()
    sent = 0
    stop_sending = asyncio.Event()

    async def send() -> None:
        nonlocal sent
        while not stop_sending.is_set():
            await producer.send(topic, b"x", key=str(sent).encode())
            sent += 1
            await asyncio.sleep(0.004)

    async def serve(name: str, stop: asyncio.Event) -> None:
        runner = StageRunner(
            producer=producer,
            handler=Seen(name, seen),
            topics=[topic],
            max_batch_size=100_000,
            max_wait_ms=1_500,  # long collects: rebalances land in them
            stop=stop,
        )
        await serve_stage(settings, runner, group_id=group, role=name)

    sending = asyncio.create_task(send())
    stop_a = asyncio.Event()
    a = asyncio.create_task(serve("a", stop_a))
    try:
        await until(lambda: seen, timeout=60, what="consumer a to handle its first batch")
        # Each 5 s is a deliberate window: b joins (a rebalance lands in a's long collect),
        # consumes, leaves (another rebalance), and a runs alone again.
        for _ in range(3):
            stop_b = asyncio.Event()
            b = asyncio.create_task(serve("b", stop_b))
            await asyncio.sleep(5)
            stop_b.set()
            await b
            await asyncio.sleep(5)
        stop_sending.set()
        await sending
        await producer.flush()
        await until(lambda: len(seen) >= sent, timeout=60, interval=0.2, what="every record")
        await asyncio.sleep(2)  # a window for any record handled twice to show
    finally:
        stop_a.set()
        stop_sending.set()
        await asyncio.gather(a, sending, return_exceptions=True)
        await producer.stop()
    twice = {k: n for k, n in seen.items() if n > 1}
    assert len(seen) == sent
    assert not twice, f"{len(twice)} records handled more than once: {sorted(twice)[:10]}"
