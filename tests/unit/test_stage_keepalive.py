"""A batch slower than max_poll_interval_ms keeps polling with its partitions paused, so aiokafka
does not leave the group mid-batch; a fast batch pauses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from deepfake_stream.core.stage import BatchResult, StageRunner
from tests.unit.test_stage import TP0, TP1, FakeConsumer, FakeProducer


class PausingConsumer(FakeConsumer):
    """FakeConsumer plus pause/resume: paused partitions return nothing from getmany."""

    def __init__(self, events: list[tuple[Any, ...]], interval_ms: int) -> None:
        super().__init__(events)
        self._max_poll_interval_ms = interval_ms
        self._paused: set[TopicPartition] = set()
        self.polls_while_paused = 0

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def getmany(self, *, timeout_ms: int, max_records: int = 500) -> dict[Any, list[Any]]:
        if self._paused:
            self.polls_while_paused += 1
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)


class SlowHandler:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        await asyncio.sleep(self.seconds)
        return BatchResult()


async def _one_batch(interval_ms: int, batch_s: float) -> PausingConsumer:
    events: list[tuple[Any, ...]] = []
    consumer = PausingConsumer(events, interval_ms)
    consumer.add(0, 0, 1)
    consumer.add(1, 0)
    runner = StageRunner(
        consumer=consumer,  # type: ignore[arg-type]
        producer=FakeProducer(events),  # type: ignore[arg-type]
        handler=SlowHandler(batch_s),
        topics=["in"],
        max_batch_size=10,
        max_wait_ms=0,
    )
    await runner.run(count=3, timeout=5)
    return consumer


async def test_a_slow_batch_polls_with_every_partition_paused_then_resumes() -> None:
    consumer = await _one_batch(interval_ms=300, batch_s=0.6)  # keep-alive starts at 0.1 s
    assert consumer.polls_while_paused >= 3
    assert consumer.paused() == set()
    assert consumer.commits == [{TP0: 2, TP1: 1}]  # committed once, nothing skipped


async def test_a_fast_batch_pauses_nothing() -> None:
    consumer = await _one_batch(interval_ms=3_000, batch_s=0.05)
    assert consumer.polls_while_paused == 0
    assert consumer.commits == [{TP0: 2, TP1: 1}]
