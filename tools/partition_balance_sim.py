"""How evenly two workers share bursts of routed items: key hash against the router's balancer.

Each burst is ``--items`` of `bench`'s texts with ids as `bench pipeline` names them, routed
to a backend topic of ``--partitions`` partitions that ``--workers`` workers split in equal
ranges (Kafka's range assignor). An item costs the windows its model scores it in (the
router's measure). A burst ends when its busier worker does, so the workers' share of their
throughput is ``total cost / (workers x busiest worker's cost)``: 1.0 when they finish
together. The balancer starts each burst fresh (the hardest case for it; a running router's
totals are already even). No broker or model is needed::

    python tools/partition_balance_sim.py [--bursts 200] [--items 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

from aiokafka.partitioner import DefaultPartitioner

from deepfake_stream.bench.texts import sample_texts
from deepfake_stream.routing.balance import PartitionBalancer
from deepfake_stream.text.windows import window_count

TOPIC = "backend"


def share(costs_by_partition: list[int], workers: int) -> float:
    per = len(costs_by_partition) // workers
    loads = [sum(costs_by_partition[w * per : (w + 1) * per]) for w in range(workers)]
    return sum(loads) / (workers * max(loads))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bursts", type=int, default=200)
    ap.add_argument("--items", type=int, default=100, help="items per burst")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--window-chars", type=int, default=800, help="small-perplexity's")
    ap.add_argument("--max-windows", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    texts = sample_texts()
    hashed, balanced = [], []
    for burst in range(args.bursts):
        by_hash = [0] * args.partitions
        balancer = PartitionBalancer({TOPIC: args.partitions})
        by_balance = [0] * args.partitions
        for i in range(args.items):
            key = f"bench-b{burst}-{i}".encode()
            cost = window_count(len(rng.choice(texts)), args.window_chars, args.max_windows)
            by_hash[DefaultPartitioner()(key, list(range(args.partitions)), [])] += cost
            picked = balancer.pick(TOPIC, cost)
            assert picked is not None
            by_balance[picked] += cost
        hashed.append(share(by_hash, args.workers))
        balanced.append(share(by_balance, args.workers))

    result = {
        name: {"mean": round(statistics.fmean(v), 3), "worst": round(min(v), 3)}
        for name, v in (("key_hash", hashed), ("balanced", balanced))
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.bursts} bursts of {args.items} items, {args.workers} workers, "
        f"{args.partitions} partitions; share of the workers' throughput:"
    )
    for name, r in result.items():
        print(f"  {name:9s} mean {r['mean']:.3f}  worst burst {r['worst']:.3f}")


if __name__ == "__main__":
    main()
