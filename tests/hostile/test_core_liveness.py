"""The liveness reader survives a failing poll: it logs, reconnects with a bounded back-off
and keeps seeing workers (before, one error ended it silently and every backend then looked
dead to the router)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord, TopicPartition

from deepfake_stream.core.liveness import Heartbeat, LivenessView, now_ms
from deepfake_stream.core.settings import load_settings


class FlakyConsumer:
    """Fails its first ``failures`` polls, then returns one heartbeat."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.stopped = False

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker went away")
        beat = Heartbeat(
            worker_id="w1", backend="cpu", models=("m",), ts_ms=now_ms(), ttl_ms=60_000
        )
        value = beat.encode()
        rec = ConsumerRecord("hb", 0, 0, 0, 0, None, value, None, 0, len(value), [])
        await asyncio.sleep(0.01)
        return {TopicPartition("hb", 0): [rec]}

    async def stop(self) -> None:
        self.stopped = True


async def test_a_failing_heartbeat_reader_reconnects_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings({("worker", "liveness_retry_max_s"): 0.2})
    opened: list[FlakyConsumer] = []

    class View(LivenessView):
        async def _open(self) -> FlakyConsumer:  # type: ignore[override]
            # The first consumer fails twice; the reconnected ones work.
            opened.append(FlakyConsumer(failures=2 if not opened else 0))
            return opened[-1]

    view = View(settings)
    caplog.set_level(logging.WARNING, logger="deepfake_stream.core.liveness")
    await view.start()
    try:
        async with asyncio.timeout(5):
            while not view.alive("cpu", "m"):
                await asyncio.sleep(0.01)
        assert view._task is not None and not view._task.done()
    finally:
        await view.stop()
    assert view.read_errors == 1 and len(opened) == 2 and opened[0].stopped
    assert "liveness reader failed (KafkaConnectionError" in caplog.text
