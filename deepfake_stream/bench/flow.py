"""Publish items into one topic and time their arrival on another: the measuring core that
``bench relay`` and ``bench pipeline`` share, so their figures are taken the same way.

Throughput is items / (last arrival - first publish). Latency is publish call → arrival at
the reading client, per item (p50/p95/p99); for verdicts, the verdict's own ``latency_ms``
(router first sight → verdict) is summarised too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from tqdm import tqdm

from deepfake_stream.core.kafka import make_consumer, make_producer
from deepfake_stream.core.settings import Settings

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the value at rank ceil(q/100 * n)); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def summarise(values: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": percentile(values, q) for q in PERCENTILES}


@dataclass(kw_only=True)
class FlowRun:
    """One measured run: ``n`` items in, what came out, how fast and how late."""

    n: int
    received: int
    duplicates: int
    seconds: float
    items_per_s: float
    target_rate: float | None = None
    """Paced publishing rate (items/s); None: as fast as the broker acknowledges."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Publish call → arrival, per item."""
    verdict_latency_ms: dict[str, float] = field(default_factory=dict)
    """The verdicts' own latency_ms (router first sight → verdict), when present."""
    batch_sizes: dict[str, float] = field(default_factory=dict)
    """p50/p95/p99 of the verdicts' batch_size, when present."""

    @property
    def complete(self) -> bool:
        return self.received == self.n

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "received": self.received,
            "duplicates": self.duplicates,
            "seconds": round(self.seconds, 3),
            "items_per_s": round(self.items_per_s, 1),
            "target_rate": None if self.target_rate is None else round(self.target_rate, 1),
            "latency_ms": _rounded(self.latency_ms),
            "verdict_latency_ms": _rounded(self.verdict_latency_ms),
            "batch_sizes": _rounded(self.batch_sizes),
        }


def _rounded(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else round(v, 2)) for k, v in d.items()}


async def _assign_end(consumer: Any, topic: str) -> None:
    deadline = time.monotonic() + 15
    while not consumer.partitions_for_topic(topic):
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} does not exist")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:  # resolve the end offsets now, before anything is published
        await consumer.position(tp)


async def drive(
    settings: Settings,
    *,
    in_topic: str,
    out_topic: str,
    items: Sequence[tuple[str, bytes]],
    rate: float | None = None,
    timeout: float = 300.0,
    label: str = "",
    progress: bool | None = None,
) -> FlowRun:
    """Publish ``items`` (id, value) to ``in_topic`` and wait for each id on ``out_topic``."""
    expected = {item_id for item_id, _ in items}
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}
    verdict_ms: list[float] = []
    batch_sizes: list[float] = []
    duplicates = 0
    consumer = make_consumer(settings, group_id=None, role="bench-reader")
    producer = make_producer(settings, role="bench-producer")
    await consumer.start()
    await producer.start()
    bar = tqdm(total=len(items), desc=label or out_topic, unit="item", disable=progress is False)
    all_in = asyncio.Event()
    try:
        await _assign_end(consumer, out_topic)

        async def read() -> None:
            nonlocal duplicates
            while len(arrived) < len(expected):
                batches = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batches.values():
                    for r in records:
                        key = r.key.decode() if r.key else ""
                        if key not in expected:
                            continue  # a leftover of an earlier run on the same topic
                        if key in arrived:
                            duplicates += 1
                            continue
                        arrived[key] = now
                        bar.update(1)
                        if b'"latency_ms"' in (r.value or b""):
                            doc = json.loads(r.value)
                            verdict_ms.append(float(doc["latency_ms"]))
                            batch_sizes.append(float(doc["batch_size"]))
            all_in.set()

        reader = asyncio.create_task(read())
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for i, (item_id, value) in enumerate(items):
            if rate:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent_at[item_id] = time.perf_counter()
            pending.append(await producer.send(in_topic, value, key=item_id.encode()))
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        with contextlib.suppress(TimeoutError):  # reported as received < n
            await asyncio.wait_for(all_in.wait(), timeout)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    finally:
        bar.close()
        await producer.stop()
        await consumer.stop()
    first = min(sent_at.values())
    last = max(arrived.values(), default=first)
    seconds = max(last - first, 1e-9)
    lat = [(arrived[k] - sent_at[k]) * 1000 for k in arrived]
    return FlowRun(
        n=len(items),
        received=len(arrived),
        duplicates=duplicates,
        seconds=seconds,
        items_per_s=len(arrived) / seconds,
        target_rate=rate,
        latency_ms=summarise(lat),
        verdict_latency_ms=summarise(verdict_ms) if verdict_ms else {},
        batch_sizes=summarise(batch_sizes) if batch_sizes else {},
    )
