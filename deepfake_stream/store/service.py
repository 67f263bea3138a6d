"""``deepfake-stream store``: detect.verdicts and detect.dlq into the verdict store.

One lifespan: migrate (waiting for the database), connect to Kafka, consume with the
project's StageRunner (own consumer group ``<prefix>.store``), prune on a schedule; then
tear down in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from deepfake_stream.core.metrics import metrics_server
from deepfake_stream.core.settings import Settings
from deepfake_stream.core.stage import StageRunner
from deepfake_stream.store import queries
from deepfake_stream.store.db import make_engine, redacted_url, upgrade_with_retry
from deepfake_stream.store.writer import StoreHandler

log = logging.getLogger(__name__)


async def prune_once(engine: AsyncEngine, settings: Settings) -> dict[str, int]:
    deleted = await queries.prune(
        engine,
        verdict_days=settings.database.verdict_retention_days,
        audit_days=settings.database.audit_retention_days,
    )
    if any(deleted.values()):
        log.info("retention: deleted %s", deleted)
    return deleted


async def _prune_forever(engine: AsyncEngine, settings: Settings) -> None:
    while True:
        try:
            await prune_once(engine, settings)
        except Exception as exc:  # the database may be away: the next round tries again
            log.warning("retention run failed (%s: %s)", type(exc).__name__, exc)
        await asyncio.sleep(settings.database.prune_interval_s)


async def serve_store(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    from deepfake_stream.core.service import kafka_lifespan, run_stage

    stop = stop or asyncio.Event()
    engine = make_engine(settings)
    try:
        if not await upgrade_with_retry(engine, settings, stop):
            return 0
        log.info("verdict store at %s is migrated", redacted_url(settings))
        async with kafka_lifespan(settings, "store") as producer:
            handler = StoreHandler(
                engine, verdict_topic=settings.topics.verdicts, dlq_topic=settings.topics.dlq
            )
            runner = StageRunner(
                producer=producer,  # unused: the store produces nothing
                handler=handler,
                stage="store",
                topics=[settings.topics.verdicts, settings.topics.dlq],
                max_batch_size=settings.database.store_batch_size,
                max_wait_ms=settings.database.store_max_wait_ms,
                stop=stop,
                pipeline=settings.worker.pipeline,
                fetch_idle_wait_ms=settings.database.store_idle_wait_ms,
                fetch_idle_after_ms=settings.kafka.fetch_idle_after_ms,
            )
            pruning = asyncio.create_task(_prune_forever(engine, settings), name="prune")
            try:
                with metrics_server(settings, "store"):  # consumer lag of <prefix>.store
                    n = await run_stage(
                        settings,
                        runner,
                        group_id=f"{settings.kafka.group_prefix}.store",
                        role="store",
                        count=count,
                        timeout=timeout,
                    )
            finally:
                pruning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruning
            log.info(
                "store stopped after %d messages: %d verdicts, %d dead letters (%d stored "
                "already), %d not verdicts",
                n,
                handler.verdicts,
                handler.dead,
                handler.redelivered,
                handler.skipped,
            )
            return n
    finally:
        await engine.dispose()
