"""Poison batches: a batch that keeps failing is split to its culprit, the culprit is
dead-lettered after a bounded number of attempts, and the stage says it is unhealthy
meanwhile; a hung batch is bounded too; a broker outage is never blamed on the records."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.stage import BatchResult, Outgoing, StageRunner
from tests.unit.test_stage import TP0, TP1, FakeConsumer, FakeProducer, Handler


class Poisoned(Handler):
    """Fails (or hangs) on any batch holding one of ``culprits``; counts health on each call."""

    def __init__(self, *culprits: tuple[int, int], hang: bool = False) -> None:
        super().__init__()
        self.culprits = set(culprits)
        self.hang = hang
        self.calls = 0
        self.runner: StageRunner | None = None
        self.unhealthy_seen = False

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        self.calls += 1
        if self.runner is not None and not self.runner.healthy:
            self.unhealthy_seen = True
        if any((r.partition, r.offset) in self.culprits for r in records):
            if self.hang:
                await asyncio.sleep(3600)
            raise RuntimeError("tokenizer crashed")
        return await super().handle(records)

    def poisoned(self, record: ConsumerRecord, error: BaseException) -> Outgoing:
        return Outgoing(
            topic="dlq", value=record.value or b"", headers=[("why", str(error).encode())]
        )


def runner_for(handler: Poisoned, **kw: Any) -> tuple[StageRunner, FakeConsumer, list[Any]]:
    events: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(events)
    runner = StageRunner(
        consumer=consumer,  # type: ignore[arg-type]
        producer=kw.pop("producer", None) or FakeProducer(events),  # type: ignore[arg-type]
        handler=handler,
        topics=["in"],
        max_batch_size=100,
        max_wait_ms=0,
        poll_ms=50,
        **kw,
    )
    handler.runner = runner
    return runner, consumer, events


def outputs(events: list[Any]) -> list[bytes]:
    return [e[1] for e in events if e[0] == "ack"]


async def test_a_poison_record_is_split_out_and_dead_lettered_the_rest_flows() -> None:
    handler = Poisoned((0, 5))
    runner, consumer, events = runner_for(handler, max_attempts=3)
    consumer.add(0, *range(16))
    consumer.add(1, 0, 1, 2)
    assert await runner.run(count=19, timeout=10) == 19
    assert runner.dead_lettered == 1
    assert max(c.get(TP0, 0) for c in consumer.commits) == 16
    assert max(c.get(TP1, 0) for c in consumer.commits) == 3
    # Everything but the culprit came out; the culprit's bytes went to the dead letter only.
    assert set(outputs(events)) == {f"0:{o}".encode() for o in range(16)} | {
        b"1:0",
        b"1:1",
        b"1:2",
    }
    assert (0, 5) not in handler.seen  # never handled successfully
    # Bounded: 3 attempts of the whole batch, then about 3 per level of halving (log2 19 ~ 5).
    assert handler.calls <= 3 + 2 * 3 * 5
    assert handler.unhealthy_seen and runner.healthy
    commits = [
        max(c.get(TP0, 0) for c in consumer.commits[: i + 1]) for i in range(len(consumer.commits))
    ]
    assert commits == sorted(commits)  # commits only move forward


async def test_a_hung_batch_counts_as_failed_and_its_culprit_is_dead_lettered() -> None:
    handler = Poisoned((0, 1), hang=True)
    runner, consumer, events = runner_for(handler, max_attempts=1, batch_timeout_s=0.2)
    consumer.add(0, 0, 1, 2, 3)
    async with asyncio.timeout(10):
        assert await runner.run(count=4) == 4
    assert runner.dead_lettered == 1
    assert set(outputs(events)) == {b"0:0", b"0:1", b"0:2", b"0:3"}  # 0:1 as the dead letter
    assert max(c[TP0] for c in consumer.commits) == 4


class BrokerDown(FakeProducer):
    """The broker refuses the first ``n`` sends (a transient Kafka error)."""

    def __init__(self, events: list[Any], n: int) -> None:
        super().__init__(events)
        self.down = n

    async def send(self, topic: str, value: bytes, **kw: Any) -> asyncio.Future[None]:
        if self.down:
            self.down -= 1
            raise KafkaConnectionError("no broker")
        return await super().send(topic, value, **kw)


async def test_a_broker_outage_is_retried_and_never_dead_letters_anything() -> None:
    handler = Poisoned()
    runner, consumer, _ = runner_for(handler, max_attempts=2, producer=BrokerDown([], n=4))
    consumer.add(0, 0, 1, 2)
    async with asyncio.timeout(20):
        assert await runner.run(count=3) == 3
    assert runner.dead_lettered == 0
    assert max(c[TP0] for c in consumer.commits) == 3
