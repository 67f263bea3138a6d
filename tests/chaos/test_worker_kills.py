"""SIGKILL of CPU workers three times during 20,000 items: nothing is lost, and each kill
duplicates at most one micro-batch. While a backlog waits a batch grows from
WORKER_MAX_BATCH_SIZE up to WORKER_BACKLOG_BATCH_SIZE, so that is the bound per kill (a run
on 2026-12-07 lost one whole 256-item batch to one kill, past the old 3 x 64 bound)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from aiokafka import AIOKafkaProducer

from tests.system import Outcome, deepfake_up, percentile, read_outputs, wait_for_verdict_of

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

N = 20_000
KILLS = 3
MAX_BATCH = 64
BACKLOG_BATCH = 256  # the default WORKER_BACKLOG_BATCH_SIZE, set here so the bound is explicit


async def test_sigkill_cpu_workers_three_times_during_20000_items(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with deepfake_up(
        tmp_path,
        WORKER_CPU_WORKERS="2",
        WORKER_MAX_BATCH_SIZE=str(MAX_BATCH),
        WORKER_BACKLOG_BATCH_SIZE=str(BACKLOG_BATCH),
    ) as up:
        await wait_for_verdict_of(up.bootstrap, "probe-0")
        producer = AIOKafkaProducer(
            bootstrap_servers=up.bootstrap, acks="all", max_batch_size=1 << 20, linger_ms=5
        )
        await producer.start()
        started = time.monotonic()

        async def publish() -> None:
            futures = []
            for i in range(N):
                doc = {"id": f"c-{i}", "text": f"Sample text number {i} about topic {i % 97}."}
                futures.append(
                    await producer.send(
                        "detect.in", json.dumps(doc).encode(), key=doc["id"].encode()
                    )
                )
                if i % 1000 == 0:
                    await asyncio.sleep(0.05)  # spread publishing over the kills
            await asyncio.gather(*futures)

        publishing = asyncio.create_task(publish())
        killed = 0
        for _ in range(KILLS):
            await asyncio.sleep(4)
            pids = up.children("deepfake-stream worker --backend cpu")
            assert pids, up.log()[-2000:]
            os.kill(pids[0], signal.SIGKILL)
            killed += 1
        await publishing
        await producer.stop()
        out = Outcome()
        await read_outputs(
            up.bootstrap,
            out,
            lambda o: sum(k.startswith("c-") for k in o.verdicts) >= N,
            timeout=400,
        )
        elapsed = time.monotonic() - started
    ids = {k for k in out.verdicts if k.startswith("c-")}
    lost = N - len(ids)
    dups = sum(len(v) - 1 for k, v in out.verdicts.items() if k.startswith("c-"))
    lat = [v[0]["latency_ms"] for k, v in out.verdicts.items() if k.startswith("c-")]
    print(
        f"chaos: {N} items, {killed} SIGKILLs, lost {lost}, duplicates {dups}, "
        f"{elapsed:.0f}s ({N / elapsed:.0f} items/s), p50 {percentile(lat, 50):.0f} ms, "
        f"p99 {percentile(lat, 99):.0f} ms"
    )
    assert lost == 0
    # A killed worker loses at most the batch it had produced but not yet committed.
    assert dups <= killed * BACKLOG_BATCH, f"{dups} duplicates > {killed} kills x {BACKLOG_BATCH}"
    assert "restarting" in up.log()
