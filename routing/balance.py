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

This does not keep one id's items in order on a backend topic. Nothing did before: a held
item lets the items behind it pass, and fallbacks re-publish. Consumers de-duplicate by
``(tenant, id, model_version, text_sha256)`` (the contract), and the key is still the id.
"""

from __future__ import annotations


class PartitionBalancer:
    def __init__(self, partitions: dict[str, int]) -> None:
        """``partitions``: each backend topic's partition count when the router started. A
        topic not named keeps the producer's key hash; partitions added later get no items
        until the router restarts (``kafka-topics.sh --alter`` is an operator's act)."""
        self._given = {topic: [0] * n for topic, n in partitions.items() if n > 0}

    def pick(self, topic: str, cost: int) -> int | None:
        """The partition for an item of ``cost`` on ``topic``; None to let the key decide."""
        given = self._given.get(topic)
        if given is None:
            return None
        best = min(range(len(given)), key=given.__getitem__)
        given[best] += cost
        return best
