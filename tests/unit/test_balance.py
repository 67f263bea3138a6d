"""Routed items go to the backend partition given the least work (routing/balance.py)."""

from __future__ import annotations

import json
import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.settings import load_settings
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.balance import PartitionBalancer
from deepfake_stream.routing.router import Router
from deepfake_stream.text.windows import split_windows, window_count


def test_each_item_goes_to_the_least_loaded_partition() -> None:
    balancer = PartitionBalancer({"t": 3})
    assert [balancer.pick("t", c) for c in (5, 1, 1, 1, 1, 4)] == [0, 1, 2, 1, 2, 1]


def test_a_topic_it_was_not_given_is_left_to_the_key() -> None:
    balancer = PartitionBalancer({"t": 2, "empty": 0})
    assert balancer.pick("other", 3) is None
    assert balancer.pick("empty", 3) is None


def test_window_count_is_what_split_windows_gives() -> None:
    text = "word " * 4000
    for size in (1, 99, 100, 101, 150, 151, 999, 5000, 20_000):
        for window, most in ((100, 64), (100, 4), (800, 16), (3000, 64)):
            assert window_count(size, window, most) == len(
                split_windows(text[:size], window, most).bounds
            )


class AllAlive:
    def alive(self, backend: str, model_id: str) -> bool:
        return True

    def live_backends(self) -> list[str]:
        return ["cpu"]


def _router(balanced: bool) -> Router:
    registry = registry_from_dict(
        {
            "models": {
                "m": {"kind": "echo", "version": "1", "size": "tiny", "window_chars": 100},
            }
        },
        default_model="m",
        source="test",
    )
    settings = load_settings()
    topic = settings.topics.backend("cpu")
    balancer = PartitionBalancer({topic: 12}) if balanced else None
    return Router(settings, registry, AllAlive(), balancer)  # type: ignore[arg-type]


def _records(n: int) -> list[ConsumerRecord]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        doc = {"id": f"item-{i}", "text": "w " * rng.randint(10, 400)}
        value = json.dumps(doc).encode()
        out.append(ConsumerRecord("detect.in", 0, i, 0, 0, None, value, None, 0, len(value), []))
    return out


def _windows(record: ConsumerRecord) -> int:
    return window_count(len(json.loads(record.value)["text"]), 100, 64)


async def test_the_router_spreads_a_burst_evenly_over_the_partitions() -> None:
    records = _records(100)
    cost = {r.value: _windows(r) for r in records}
    result = await _router(balanced=True).handle(records)
    assert len(result.out) == 100
    given = [0] * 12
    for out, record in zip(result.out, records, strict=True):
        assert out.key == json.loads(record.value)["id"].encode()  # still keyed by id
        assert out.partition is not None
        given[out.partition] += cost[record.value]
    # Within one item's cost of each other (the largest is 8 windows)...
    assert max(given) - min(given) <= max(cost.values())
    # ...where the key hash that places them without a balancer leaves a wide spread.
    hashed = [0] * 12
    partitioner = DefaultPartitioner()
    for record in records:
        key = json.loads(record.value)["id"].encode()
        hashed[partitioner(key, list(range(12)), list(range(12)))] += cost[record.value]
    assert max(hashed) - min(hashed) > 2 * max(cost.values())


async def test_without_a_balancer_the_key_decides() -> None:
    result = await _router(balanced=False).handle(_records(5))
    assert [o.partition for o in result.out] == [None] * 5


def test_an_id_seen_recently_keeps_its_partition_so_one_worker_sees_its_copies_in_order() -> None:
    # Two copies of one id on two workers at once would both miss the verdict cache.
    balancer = PartitionBalancer({"t": 3}, recent=2)
    assert balancer.pick("t", 5, b"post-1") == 0
    assert balancer.pick("t", 1, b"a") == 1
    assert balancer.pick("t", 1, b"post-1") == 0  # not the least loaded: where its copy went
    assert balancer.pick("t", 1, b"b") == 2
    assert balancer.pick("t", 1, b"c") == 1  # post-1 is forgotten (recent=2) ...
    assert balancer.pick("t", 1, b"post-1") == 2  # ... and balanced again
