"""BatchResult.after_ack: awaited after every output is acknowledged, before the commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.stage import BatchResult, Outgoing
from tests.unit.test_stage import TP0, kinds, make_runner


class Recording:
    """One output per record plus an after-ack callback that logs itself into the events."""

    def __init__(self, events: list[tuple[Any, ...]], *, fail: bool = False) -> None:
        self.events = events
        self.fail = fail
        self.calls = 0

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        result = BatchResult()
        for r in records:
            result.out.append(Outgoing(topic="out", value=r.value or b""))

        async def recorded() -> None:
            self.calls += 1
            self.events.append(("after_ack", len(records)))
            if self.fail:
                raise ConnectionError("redis went away")

        result.after_ack.append(recorded)
        return result


def _with_handler(fail: bool = False):  # type: ignore[no-untyped-def]
    runner, consumer, producer, events = make_runner()
    handler = Recording(events, fail=fail)
    runner.handler = handler
    return runner, consumer, producer, events, handler


async def test_after_ack_runs_after_every_ack_and_before_the_commit() -> None:
    runner, consumer, _, events, handler = _with_handler()
    consumer.add(0, 0, 1, 2)
    assert await runner.run(count=3, timeout=5) == 3
    acks, after, commits = kinds(events, "ack"), kinds(events, "after_ack"), kinds(events, "commit")
    assert len(acks) == 3 and len(after) == 1 and len(commits) == 1
    assert max(acks) < after[0] < commits[0], events
    assert handler.calls == 1
    assert consumer.commits == [{TP0: 3}]


async def test_after_ack_is_not_called_when_producing_fails() -> None:
    runner, consumer, producer, events, _ = _with_handler()
    producer.fail_next = 1
    consumer.add(0, 0, 1)
    await runner.run(count=2, timeout=5)
    nack = kinds(events, "nack")[0]
    after = kinds(events, "after_ack")
    # Nothing is recorded for the failed attempt; only the successful re-read records.
    assert len(after) == 1 and after[0] > nack
    assert all(i > nack for i in after)
    assert consumer.commits == [{TP0: 2}]


async def test_a_failing_after_ack_callback_does_not_block_the_commit() -> None:
    runner, consumer, _, events, handler = _with_handler(fail=True)
    consumer.add(0, 0, 1)
    assert await runner.run(count=2, timeout=5) == 2
    assert handler.calls == 1
    assert consumer.commits == [{TP0: 2}]
    assert kinds(events, "after_ack")[0] < kinds(events, "commit")[0]
