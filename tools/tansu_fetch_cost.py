"""What one consumer reading a live topic costs the embedded broker, as the topic's history grows.

Starts a Tansu broker (the embedded one), publishes ``--rate`` items/s (2.8 KB each, as
`bench` does) to a 12-partition topic for ``--seconds`` while one consumer reads them as they
arrive (20 ms fetch waits, the services' busy wait), and reports the broker's CPU. Then it
appends ``--fill`` records as one-record batches (what a paced producer writes) and measures
again, ``--steps`` times. On Tansu 0.6's memory engine the same traffic costs more the more
batches the topic holds; Apache Kafka finds a fetch's offset through its segment index.
``--fill-elsewhere`` appends them to another topic instead: whether the cost follows the
topic read or everything the broker holds (a benchmark's later runs use fresh topics)::

    python tools/tansu_fetch_cost.py [--rate 200] [--fill 10000] [--steps 2] [--fill-elsewhere]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from deepfake_stream.bench import cpu
from deepfake_stream.embedded_broker import EmbeddedBroker, free_port

TOPIC, HISTORY, PARTITIONS, VALUE = "probe", "history", 12, b"x" * 2800


def cpu_seconds(pid: int) -> float:
    used = cpu.cpu_seconds(pid)
    if used is None:
        raise RuntimeError("the broker exited")
    return used


async def read_live(bootstrap: str, stop: asyncio.Event) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=20, enable_auto_commit=False
    )
    await consumer.start()
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    got = 0
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            got += sum(len(rs) for rs in batches.values())
    finally:
        await consumer.stop()
    return got


async def paced(bootstrap: str, pid: int, rate: float, seconds: float) -> float:
    """The broker's CPU (% of one core) while ``rate`` items/s are published and read."""
    stop = asyncio.Event()
    reader = asyncio.create_task(read_live(bootstrap, stop))
    await asyncio.sleep(1.0)  # the reader is at the end of the topic
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=2
    )
    await producer.start()
    before, started, sent, acks = cpu_seconds(pid), time.perf_counter(), 0, []
    while time.perf_counter() - started < seconds:
        delay = started + sent / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        acks.append(await producer.send(TOPIC, VALUE, key=str(sent).encode()))
        sent += 1
    await asyncio.gather(*acks)
    used = cpu_seconds(pid) - before
    stop.set()
    await producer.stop()
    await reader
    return 100 * used / seconds


async def fill(bootstrap: str, n: int, topic: str) -> None:
    """``n`` records, each its own batch (each send awaited before the next)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0
    )
    await producer.start()
    try:
        for i in range(n):
            await (await producer.send(topic, VALUE, partition=i % PARTITIONS))
    finally:
        await producer.stop()


async def main(args: argparse.Namespace) -> None:
    broker = EmbeddedBroker(port=free_port()).start()
    assert broker.process is not None
    pid = broker.process.pid
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (TOPIC, HISTORY)])
        await admin.close()
        held = 0
        where = " in another topic" if args.fill_elsewhere else ""
        for step in range(args.steps + 1):
            if step:
                await fill(broker.bootstrap, args.fill, HISTORY if args.fill_elsewhere else TOPIC)
                held += args.fill
            share = await paced(broker.bootstrap, pid, args.rate, args.seconds)
            print(
                f"{held:>7,} one-record batches already held{where}: {args.rate:g} items/s "
                f"published and read as they arrive cost the broker {share:.0f}% of a core",
                flush=True,
            )
    finally:
        broker.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="items/s published and read")
    ap.add_argument("--seconds", type=float, default=5.0, help="each measurement's length")
    ap.add_argument("--fill", type=int, default=10_000, help="one-record batches per step")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument(
        "--fill-elsewhere", action="store_true", help="append the batches to another topic"
    )
    asyncio.run(main(ap.parse_args()))
