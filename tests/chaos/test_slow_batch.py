"""A micro-batch slower than max.poll.interval.ms: the worker does not fall into an endless
leave-group / rebalance / re-read loop, and every item is scored.

The slow batch is deterministic (any batch holding the SLOW text takes longer than the poll
interval every time), as a batch of long texts on a slow model would be: a worker that
leaves its group during the batch cannot commit it, re-reads it after the rebalance, is slow
again, and so on forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.models.base import Score
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.service import serve_router
from tests.chaos.streams import report
from tests.conftest import unique_settings
from tests.doubles import EchoDetector
from tests.integration.harness import collect, publish, running, wait_live

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

POLL_INTERVAL_MS = 10_000  # the settings' minimum (KAFKA_MAX_POLL_INTERVAL_MS)
SLOW_S = 13.0  # > the poll interval, and past the heartbeat that notices it
N = 60


class SlowOnMarker(EchoDetector):
    """Takes SLOW_S for any batch containing "SLOW" (in the inference thread, as real models)."""

    slow_batches = 0

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        if any("SLOW" in t for t in texts):
            type(self).slow_batches += 1
            time.sleep(SLOW_S)
        return super().predict_batch(texts)


async def test_a_batch_slower_than_max_poll_interval_is_scored_without_a_rebalance_loop(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="deepfake_stream.core.stage")
    registry = registry_from_dict(
        {"models": {"m": {"kind": "echo", "size": "small", "version": "t1"}}},
        default_model="m",
        source="test",
    )
    settings = unique_settings(
        kafka_bootstrap,
        kafka__max_poll_interval_ms=POLL_INTERVAL_MS,
        worker__max_batch_size=8,
        worker__max_wait_ms=100,
    )
    SlowOnMarker.slow_batches = 0
    detector = SlowOnMarker(registry.models["m"].spec())
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": detector}, stop=stop
        ),
    ):
        await wait_live(settings, "cpu", "m")
        await publish(settings, [{"id": "warm", "text": "warm up"}])
        await collect(settings, verdicts=1, timeout=60)
        ids = [f"s-{i}" for i in range(N)]
        docs = [
            {"id": i, "text": f"text {i}" + (" SLOW" if n == 20 else "")} for n, i in enumerate(ids)
        ]
        started = time.monotonic()
        await publish(settings, docs)
        results = await collect(settings, verdicts=N + 1, timeout=120, settle=2.0)
        elapsed = time.monotonic() - started
    cpu_topic = settings.topics.backend_cpu
    assignments = sum(
        "partitions assigned" in r.getMessage() and cpu_topic in r.getMessage()
        for r in caplog.records
    )
    got = [a.json()["id"] for a in results.verdicts if a.json()["id"] in set(ids)]
    lost, dups = N - len(set(got)), len(got) - len(set(got))
    report(
        "batch-slower-than-max-poll-interval",
        N,
        lost,
        dups,
        elapsed,
        slow_batch_runs=SlowOnMarker.slow_batches,
        cpu_partition_assignments=assignments,
    )
    assert lost == 0
    assert SlowOnMarker.slow_batches == 1, "the slow batch was scored once, not re-read"
    assert assignments == 1, "the worker kept its partitions through the slow batch"
