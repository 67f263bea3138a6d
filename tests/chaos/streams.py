"""What every chaos test shares: publishing a stream from outside, watching both output topics
while the failure is injected, and checking "every input id has a verdict or a dead letter"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.system import Outcome, _parts

SAMPLES = [
    "The committee will reconvene next week to review the proposal in detail.",
    "honestly no idea why the printer keeps jamming, tried everything lol",
    "Climate change poses significant challenges to global food security and biodiversity.",
    "Der Zug hatte wieder Verspätung, also bin ich zu Fuß gegangen.",
]


def healthy(prefix: str, n: int, distinct: int | None = None) -> list[tuple[str, bytes]]:
    """``n`` valid items ``prefix-i``; ``distinct`` repeats texts (cache hits) when set."""
    out = []
    for i in range(n):
        j = i if distinct is None else i % distinct
        doc = {"id": f"{prefix}-{i}", "text": f"{SAMPLES[j % 4]} Sample {j} on topic {j % 97}."}
        out.append((doc["id"], json.dumps(doc).encode()))
    return out


async def publish(
    bootstrap: str, items: Iterable[tuple[str | None, bytes]], rate: float | None = None
) -> float:
    """Publish to detect.in (acks=all), ``rate`` items/s when set; returns the seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_batch_size=1 << 20,
        linger_ms=5,
        request_timeout_ms=60_000,  # outlives a paused broker
    )
    await producer.start()
    started = time.monotonic()
    try:
        futures = []
        for i, (key, value) in enumerate(items):
            futures.append(
                await producer.send("detect.in", value, key=key.encode() if key else None)
            )
            if rate is not None:
                ahead = started + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif i % 1000 == 999:
                await asyncio.sleep(0)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


@dataclass
class Watcher:
    """Reads detect.verdicts and detect.dlq from the beginning in the background, noting when
    each verdict arrived (``arrivals``: monotonic times) so a test can see progress stall
    and resume."""

    bootstrap: str
    out: Outcome = field(default_factory=Outcome)
    arrivals: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=60_000,
        )
        await consumer.start()
        tps = [
            TopicPartition(t, p)
            for t in ("detect.verdicts", "detect.dlq")
            for p in (consumer.partitions_for_topic(t) or await _parts(consumer, t))
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read(consumer))
        return self

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                now = time.monotonic()
                for tp, records in batches.items():
                    for r in records:
                        if tp.topic == "detect.verdicts":
                            v = json.loads(r.value)
                            self.out.verdicts.setdefault(v["id"], []).append(v)
                            self.arrivals.append(now)
                        else:
                            headers = {k: (val or b"").decode() for k, val in r.headers}
                            key = r.key.decode() if r.key else None
                            self.out.dead.append((r.value, headers, key))
        finally:
            await consumer.stop()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait(self, done: Callable[[Outcome], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done(self.out):
            assert self._task is not None
            if self._task.done():
                self._task.result()  # the reader failed: surface why
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    def count(self, prefix: str) -> int:
        return sum(k.startswith(prefix) for k in self.out.verdicts)


def accounting(out: Outcome, ids: Iterable[str]) -> tuple[int, int, int]:
    """(items, lost, duplicates): an id is lost when it has neither a verdict nor a dead
    letter keyed by it; duplicates count every verdict beyond an id's first."""
    ids = list(ids)
    dead_keys = {key for _, _, key in out.dead if key}
    lost = sum(1 for i in ids if i not in out.verdicts and i not in dead_keys)
    dups = sum(len(out.verdicts[i]) - 1 for i in ids if i in out.verdicts)
    return len(ids), lost, dups


def report(name: str, items: int, lost: int, dups: int, seconds: float, **extra: object) -> str:
    line = (
        f"chaos[{name}]: {items} items, lost {lost}, duplicates {dups}, {seconds:.1f}s "
        f"({items / seconds:.0f} items/s)"
        + "".join(f", {k.replace('_', ' ')} {v}" for k, v in extra.items())
    )
    print("\n" + line, flush=True)
    return line
