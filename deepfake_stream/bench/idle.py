"""``bench idle``: what `up` costs with no traffic, and how late a lone item is.

Starts ``deepfake-stream up`` as a user does, with its own embedded broker on a free local
port (so the broker's idle polling is counted too), waits until a CPU worker is live and a
few seconds more (every stage back at its idle fetch wait), then sums the CPU time of `up`
and all its descendants over ``seconds`` (percent of one core). Then it publishes single
items, each after ``quiet_s`` of silence, and times each verdict: the goal is
WORKER_MAX_WAIT_MS + one batch's compute + 50 ms. Linux only (reads /proc).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from deepfake_stream.bench.cpu import CpuMeter
from deepfake_stream.bench.flow import _assign_end, percentile
from deepfake_stream.bench.procs import Children
from deepfake_stream.core.settings import Settings

TEXT = (
    "The council voted 7-2 on Tuesday night to extend the bike lane on Harbour Road as far as "
    "the ferry terminal, ending a dispute that had dragged on since the spring."
)


@dataclass(kw_only=True)
class IdleBench:
    seconds: float
    cpu_percent: float
    """Percent of one core used by `up` and every process under it, broker included."""
    per_process: dict[str, float] = field(default_factory=dict)
    single_ms: list[float] = field(default_factory=list)
    """Publish → verdict of single items, each after a quiet spell, sorted."""
    fetch_idle_wait_ms: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "cpu_percent": round(self.cpu_percent, 2),
            "per_process": {k: round(v, 2) for k, v in self.per_process.items()},
            "single_ms": [round(x, 1) for x in self.single_ms],
            "single_ms_max": round(max(self.single_ms), 1) if self.single_ms else None,
            "single_ms_p50": round(percentile(self.single_ms, 50), 1) if self.single_ms else None,
            "fetch_idle_wait_ms": self.fetch_idle_wait_ms,
            "error": self.error,
        }


async def run_idle(
    settings: Settings, *, seconds: float = 30.0, singles: int = 6, quiet_s: float = 2.5
) -> IdleBench:
    from deepfake_stream.bench.pipeline import wait_live
    from deepfake_stream.core.kafka import make_consumer, make_producer
    from deepfake_stream.embedded_broker import free_port
    from deepfake_stream.supervisor import console_command

    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    s = settings.model_copy(update={"kafka": kafka})
    with Children() as children:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HTTP_PORT": str(free_port()),
            "DATABASE_STATE_DIR": str(children.log_dir),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("METRICS_PORT", None)
        up = children.start("up", [*console_command(), "up"], env)
        started = time.monotonic()
        while True:
            children.check()
            try:
                await wait_live(s, "cpu", settings.models.default, timeout=2.0)
                break
            except Exception:  # the broker or the worker is not there yet
                if time.monotonic() - started > 180:
                    raise
                await asyncio.sleep(1)
        # every stage idle for longer than KAFKA_FETCH_IDLE_AFTER_MS, so at its idle wait
        await asyncio.sleep(settings.kafka.fetch_idle_after_ms / 1000 + 3)
        meter = CpuMeter(up.pid, root_role="up").start()
        await asyncio.sleep(seconds)
        share = meter.stop()
        result = IdleBench(
            seconds=share.seconds,
            cpu_percent=sum(share.per_process.values()),
            per_process=share.per_process,
            fetch_idle_wait_ms=settings.kafka.fetch_idle_wait_ms,
        )
        consumer = make_consumer(s, group_id=None, role="bench-idle")
        producer = make_producer(s, role="bench-idle")
        await consumer.start()
        await producer.start()
        try:
            await _assign_end(consumer, s.topics.verdicts)
            for _ in range(singles):
                await asyncio.sleep(quiet_s)
                item_id = f"bench-idle-{uuid.uuid4().hex[:10]}"
                doc = {"id": item_id, "text": TEXT}
                t = time.perf_counter()
                await producer.send_and_wait(
                    s.topics.input, json.dumps(doc).encode(), key=item_id.encode()
                )
                deadline = time.monotonic() + 30
                got = False
                while not got and time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=5)
                    got = any(r.key == item_id.encode() for rs in batches.values() for r in rs)
                if got:
                    result.single_ms.append((time.perf_counter() - t) * 1000)
        finally:
            await producer.stop()
            await consumer.stop()
        result.single_ms.sort()
    return result  # leaving Children stops `up` (SIGTERM: it stops its services and broker)
