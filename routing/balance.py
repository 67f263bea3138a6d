"""Which partition of a backend topic a routed item goes to: the one given the least work.

Kafka's default partitioner hashes the key, so partitions get equal numbers of items only on
average. A burst of 100 items splits 54/46 between two workers as often as not (more when the
texts differ in length), and for a model whose texts take a second each the burst then ends
on the busier worker while the other idles. Simulated on `bench`'s texts
(`tools/partition_balance_sim.py`: 200 bursts of 100, two workers, cost in 800-character
windows), the key hash left the two workers 0.926 of their throughput on average and 0.769
in the worst burst, this balancer 0.984 and 0.942; `bench pipeline` with `small-perplexity`
moved from 0.85-0.92 to 0.93-0.94 of offline (README, Measured, 2026-12-05). The router knows an
item's cost before it sends it (the windows the worker will score it in), so it sends each
item to the partition that has been given the least cost so far. With equal partitions per
worker (12 partitions, 1, 2, 3, 4 or 6 workers) the workers get equal work.

An id seen recently keeps its partition (the last ``recent`` ids per topic). Workers
de-duplicate by ``(tenant, id, model_version, text_sha256)`` (the contract) against the verdict
cache, which records an item once its verdict is acknowledged. An exact re-send that reached
another worker while the first copy was still being scored would pass both checks: the
hostile suite's re-send got two verdicts that way once. One worker takes an id's copies in
order, as under the key hash, so the second finds the first recorded (or in its own batch).
Ids not seen recently are balanced; a held item still lets the items behind it pass, as before.
"""

from __future__ import annotations

from collections import OrderedDict


class PartitionBalancer:
    def __init__(self, partitions: dict[str, int], recent: int = 65_536) -> None:
        """``partitions``: each backend topic's partition count when the router started. A
        topic not named keeps the producer's key hash; partitions added later get no items
        until the router restarts (``kafka-topics.sh --alter`` is an operator's act).
        ``recent``: how many ids per topic keep their partition (bounded memory)."""
        self._given = {topic: [0] * n for topic, n in partitions.items() if n > 0}
        self._recent = recent
        self._seen: dict[str, OrderedDict[bytes, int]] = {t: OrderedDict() for t in self._given}

    def pick(self, topic: str, cost: int, key: bytes | None = None) -> int | None:
        """The partition for an item of ``cost`` on ``topic``; None to let the key decide.
        An item whose ``key`` was picked recently goes where that one went."""
        given = self._given.get(topic)
        if given is None:
            return None
        seen = self._seen[topic]
        best = seen.get(key) if key is not None else None
        if best is None:
            best = min(range(len(given)), key=given.__getitem__)
        given[best] += cost
        if key is not None:
            seen[key] = best
            seen.move_to_end(key)
            if len(seen) > self._recent:
                seen.popitem(last=False)
        return best
