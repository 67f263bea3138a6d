"""What every service's lifespan shares: connect to the broker, stop on signals, run a stage.

A feature's service (``routing.service``, ``consumers.service``, ``store.service``) composes
these with its own handler.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from deepfake_stream.core.collector import serving_collector
from deepfake_stream.core.kafka import make_producer, wait_for_broker
from deepfake_stream.core.liveness import LivenessView
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.stage import StageRunner
from deepfake_stream.core.stage_app import serve_stage
from deepfake_stream.core.topics import ensure_topics

log = logging.getLogger(__name__)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and Ctrl-C ask the service to drain its batch, commit, and exit."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


@asynccontextmanager
async def kafka_lifespan(settings: Settings, role: str) -> AsyncIterator[AIOKafkaProducer]:
    await wait_for_broker(settings)
    await ensure_topics(settings)
    producer = make_producer(settings, role=role)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()  # flushes what is still buffered


@asynccontextmanager
async def liveness_view(settings: Settings) -> AsyncIterator[LivenessView]:
    view = LivenessView(settings)
    await view.start()
    try:
        yield view
    finally:
        await view.stop()


async def run_stage(
    settings: Settings,
    runner: StageRunner,
    *,
    group_id: str,
    role: str,
    count: int | None,
    timeout: float | None,
) -> int:
    with serving_collector(role):  # models and clients are loaded: collector set for serving
        return await serve_stage(
            settings, runner, group_id=group_id, role=role, count=count, timeout=timeout
        )
