"""Driving `deepfake-stream up` as a user would: a child process, an outside aiokafka client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deepfake_stream.embedded_broker import free_port
from deepfake_stream.supervisor import console_command


@dataclass
class UpProcess:
    process: subprocess.Popen[bytes]
    bootstrap: str
    log_path: str

    def children(self, needle: str = "") -> list[int]:
        out = subprocess.run(
            ["ps", "-ww", "--ppid", str(self.process.pid), "-o", "pid=,args="],
            capture_output=True,
            text=True,
        ).stdout
        return [int(line.split(None, 1)[0]) for line in out.splitlines() if needle in line]

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()


@contextmanager
def deepfake_up(tmp_path, *args: str, **env: str) -> Iterator[UpProcess]:  # type: ignore[no-untyped-def]
    # An existing broker (KAFKA_BOOTSTRAP_SERVERS in env) is used as is; else up embeds one.
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{free_port()}"
    log_path = str(tmp_path / "up.log")
    full_env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1", **env}
    # up also runs the HTTP shim: a free port keeps concurrent runs off each other's 8080.
    full_env.setdefault("HTTP_PORT", str(free_port()))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*console_command(), "up", *args], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    up = UpProcess(proc, bootstrap, log_path)
    try:
        deadline = time.monotonic() + 120
        while "services running" not in up.log():
            assert proc.poll() is None, f"up exited early:\n{up.log()[-3000:]}"
            assert time.monotonic() < deadline, f"up did not start:\n{up.log()[-3000:]}"
            time.sleep(0.2)
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Outcome:
    verdicts: dict[str, list[dict]] = field(default_factory=dict)
    dead: list[tuple[bytes, dict[str, str], str | None]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(len(v) - 1 for v in self.verdicts.values())


async def wait_for_verdict_of(bootstrap: str, item_id: str, timeout: float = 120) -> None:
    """Publish one probe item until the pipeline answers (workers are loaded and live)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            "detect.in",
            json.dumps({"id": item_id, "text": "probe text"}).encode(),
            key=item_id.encode(),
        )
    finally:
        await producer.stop()
    out = Outcome()
    await read_outputs(bootstrap, out, lambda o: item_id in o.verdicts, timeout)


async def read_outputs(bootstrap: str, out: Outcome, done, timeout: float) -> None:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in ("detect.verdicts", "detect.dlq")
            for p in (consumer.partitions_for_topic(t) or await _parts(consumer, t))
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while not done(out) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    if tp.topic == "detect.verdicts":
                        v = json.loads(r.value)
                        out.verdicts.setdefault(v["id"], []).append(v)
                        out.latencies_ms.append(v["latency_ms"])
                    else:
                        headers = {k: (val or b"").decode() for k, val in r.headers}
                        out.dead.append((r.value, headers, r.key.decode() if r.key else None))
    finally:
        await consumer.stop()


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return parts
        await asyncio.sleep(0.2)
    raise AssertionError(f"topic {topic} never appeared")


async def placed(bootstrap: str, topic: str, ids: set[str]) -> dict[str, list[tuple[int, int]]]:
    """Where the items ``ids`` lie in ``topic``: (partition, offset) of each copy, read from
    the start until a fetch of 2 s brings nothing. A diagnostic for missing items (the
    embedded broker answers no reliable end offsets or other groups' commits)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    found: dict[str, list[tuple[int, int]]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in await _parts(consumer, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while batches := await consumer.getmany(timeout_ms=2_000):
            for tp, records in batches.items():
                for r in records:
                    item_id = json.loads(r.value).get("id")
                    if item_id in ids:
                        found.setdefault(item_id, []).append((tp.partition, r.offset))
    finally:
        await consumer.stop()
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0
