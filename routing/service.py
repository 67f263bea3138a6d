"""The router as a service: ``deepfake-stream router`` runs :func:`serve_router`; tests call it
in-process with their own settings and stop event."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from deepfake_stream.core.metrics import metrics_server, watch_liveness
from deepfake_stream.core.service import kafka_lifespan, liveness_view, run_stage
from deepfake_stream.core.settings import BACKENDS, Settings
from deepfake_stream.core.stage import StageRunner
from deepfake_stream.core.telemetry import setup_telemetry, shutdown_telemetry
from deepfake_stream.models.registry import Registry, registry_for
from deepfake_stream.routing.balance import PartitionBalancer
from deepfake_stream.routing.router import Router

log = logging.getLogger(__name__)


async def serve_router(
    settings: Settings,
    *,
    registry: Registry | None = None,
    stop: asyncio.Event | None = None,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    registry = registry or registry_for(settings)
    stop = stop or asyncio.Event()
    setup_telemetry(settings, "router")
    async with (
        kafka_lifespan(settings, "router") as producer,
        liveness_view(settings) as view,
    ):
        watch_liveness(view)
        balancer = await partition_balancer(settings, producer) if settings.router.balance else None
        router = Router(settings, registry, view, balancer)
        runner = StageRunner(
            producer=producer,
            handler=router,
            stage="router",
            topics=[settings.topics.input],
            max_batch_size=settings.worker.max_batch_size * 4,
            backlog_batch_size=settings.worker.backlog_batch_size * 4,
            max_wait_ms=0,  # routing is cheap: never wait to fill a batch
            stop=stop,
            pipeline=settings.worker.pipeline,
            fetch_idle_wait_ms=settings.kafka.fetch_idle_wait_ms,
            fetch_idle_after_ms=settings.kafka.fetch_idle_after_ms,
            max_attempts=settings.worker.max_batch_attempts,
            batch_timeout_s=settings.worker.batch_timeout_s,
        )
        with metrics_server(settings, "router"):
            n = await run_stage(
                settings,
                runner,
                group_id=f"{settings.kafka.group_prefix}.router",
                role="router",
                count=count,
                timeout=timeout,
            )
        shutdown_telemetry()
        log.info(
            "router stopped after %d items: routed %s, dead-lettered %s",
            n,
            router.routed,
            router.dead,
        )
        return n


async def partition_balancer(settings: Settings, producer: AIOKafkaProducer) -> PartitionBalancer:
    """A balancer over every backend topic's partitions, as the broker reports them now
    (the lifespan created the topics)."""
    counts = {}
    for backend in BACKENDS:
        topic = settings.topics.backend(backend)
        counts[topic] = len(await producer.partitions_for(topic))
    log.info("routing by cost over %s", ", ".join(f"{t} ({n})" for t, n in counts.items()))
    return PartitionBalancer(counts)
