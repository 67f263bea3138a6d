"""``bench relay``: the ceiling. A do-nothing two-hop relay on plain aiokafka.

Topic A → parse the JSON, re-serialise it, publish to B with ``acks="all"``, commit after the
acknowledgements → the same again from B to C. It does what the pipeline does to every item
minus the work: same client options (deepfake_stream.core.kafka), same micro-batch sizes (the
first hop takes up to 4 x WORKER_MAX_BATCH_SIZE like the router, the second up to
WORKER_MAX_BATCH_SIZE like a worker), same partition counts, same texts, same broker, and
(by default) each hop in its own process, as `up` runs the router and the worker.

Run one hop alone with ``python -m deepfake_stream.bench.relay SRC DST GROUP MAX_RECORDS``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Sequence

from deepfake_stream.bench.flow import FlowRun, drive
from deepfake_stream.bench.procs import Children, python_module, settings_env
from deepfake_stream.core.kafka import make_consumer, make_producer, wait_for_broker
from deepfake_stream.core.settings import Settings, load_settings
from deepfake_stream.core.topics import TopicDefinition, ensure_topics

PARTITIONS = 12  # detect.in, detect.backend.cpu and detect.verdicts all have 12


async def ensure_bench_topics(settings: Settings, names: Sequence[str]) -> None:
    await ensure_topics(
        settings,
        definitions=[
            TopicDefinition(
                name=n, setting="input", partitions=PARTITIONS, replication_factor=1, configs={}
            )
            for n in names
        ],
    )


async def hop(
    settings: Settings, src: str, dst: str, group: str, max_records: int, stop: asyncio.Event
) -> int:
    """Consume ``src``, re-serialise, publish to ``dst`` (acks=all), commit; until ``stop``."""
    consumer = make_consumer(settings, src, group_id=group, role="relay")
    producer = make_producer(settings, role="relay")
    await consumer.start()
    await producer.start()
    moved = 0
    try:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=200, max_records=max_records)
            if not got:
                continue
            futures = []
            for records in got.values():
                for r in records:
                    value = json.dumps(json.loads(r.value)).encode()
                    futures.append(await producer.send(dst, value, key=r.key))
            await asyncio.gather(*futures)
            await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in got.items()})
            moved += len(futures)
    finally:
        await producer.stop()
        await consumer.stop()
    return moved


async def run_relay(
    settings: Settings,
    texts: Sequence[str],
    n: int,
    *,
    in_process: bool = False,
    warmup: int = 200,
    progress: bool | None = None,
) -> FlowRun:
    """Saturation throughput of the relay for ``n`` items (after a warm-up)."""
    await wait_for_broker(settings)
    run_id = uuid.uuid4().hex[:8]
    a, b, c = (f"bench-{run_id}.relay.{x}" for x in "abc")
    await ensure_bench_topics(settings, [a, b, c])
    batch = settings.worker.max_batch_size
    hops = [(a, b, f"bench-{run_id}.relay1", batch * 4), (b, c, f"bench-{run_id}.relay2", batch)]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[int]] = []
    with Children() as children:
        if in_process:
            tasks = [asyncio.create_task(hop(settings, *h, stop)) for h in hops]
        else:
            env = settings_env(settings)
            for i, (src, dst, group, cap) in enumerate(hops):
                args = python_module(__name__, src, dst, group, str(cap))
                children.start(f"relay-hop{i + 1}", args, env)
        try:
            await drive(
                settings,
                in_topic=a,
                out_topic=c,
                items=_items(texts, warmup, f"w{run_id}"),
                timeout=60,
                label="relay warm-up",
                progress=progress,
            )
            children.check()
            return await drive(
                settings,
                in_topic=a,
                out_topic=c,
                items=_items(texts, n, run_id),
                label="relay",
                progress=progress,
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


def _items(texts: Sequence[str], n: int, prefix: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        item_id = f"bench-{prefix}-{i}"
        doc = {"id": item_id, "text": texts[i % len(texts)]}
        out.append((item_id, json.dumps(doc).encode()))
    return out


def _main(argv: list[str]) -> int:
    from deepfake_stream.core.service import stop_on_signals

    src, dst, group, cap = argv

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await hop(load_settings(), src, dst, group, int(cap), stop)

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
