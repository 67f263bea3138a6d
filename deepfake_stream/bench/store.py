"""The store figure of ``bench pipeline``: does the verdict store keep up with the pipeline?

The store (``deepfake-stream store``, as `up` runs it) consumes the bench run's verdict
topic while the saturation run publishes. The figure is the rate at which the saturation
run's verdicts became database rows (first publish -> last row committed), beside the
pipeline's own items/s, and how long after the last verdict the last row landed. That rate
is capped by the pipeline's, so ``capacity`` also measures the store's own ceiling: the
store's write path (StoreHandler, DATABASE_STORE_BATCH_SIZE per transaction) writing
synthetic verdicts as fast as it can (deleted afterwards).
DATABASE_URL when set (e.g. PostgreSQL), else a throw-away SQLite file.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import delete, func, select

from deepfake_stream.core.settings import Settings
from deepfake_stream.schemas import Verdict
from deepfake_stream.store import db
from deepfake_stream.store.schema import verdicts


@dataclass(kw_only=True)
class StoreFigure:
    database: str
    n: int
    rows: int
    seconds: float
    rows_per_s: float
    pipeline_items_per_s: float
    lag_s: float
    """From the last verdict of the run arriving to its row being committed."""
    capacity_rows_per_s: float | None = None
    """The store's write path alone, as fast as it goes."""

    @property
    def keeps_up(self) -> bool:
        return self.rows == self.n and self.rows_per_s >= 0.9 * self.pipeline_items_per_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "n": self.n,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "pipeline_items_per_s": round(self.pipeline_items_per_s, 1),
            "lag_s": round(self.lag_s, 3),
            "keeps_up": self.keeps_up,
            "capacity_rows_per_s": None
            if self.capacity_rows_per_s is None
            else round(self.capacity_rows_per_s, 1),
        }


def store_settings(settings: Settings, scratch: Path) -> Settings:
    """The bench's store: DATABASE_URL when set, else SQLite in ``scratch`` (never the
    user's own history)."""
    if settings.database.url is not None:
        return settings
    database = settings.database.model_copy(update={"state_dir": scratch})
    return settings.model_copy(update={"database": database})


async def prepare(settings: Settings) -> None:
    """Migrate before the run, so counting rows works from the first one."""
    engine = db.make_engine(settings)
    try:
        await db.upgrade(engine)
    finally:
        await engine.dispose()


async def wait_rows(settings: Settings, prefix: str, n: int, timeout: float) -> tuple[int, float]:
    """Rows whose id starts with ``prefix``, polled until ``n`` or ``timeout``; returns the
    count and the monotonic time it was reached (or gave up)."""
    engine = db.make_engine(settings)
    query = select(func.count()).select_from(verdicts).where(verdicts.c.item_id.like(f"{prefix}%"))
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with engine.connect() as conn:
                rows = int((await conn.execute(query)).scalar() or 0)
            now = time.monotonic()
            if rows >= n or now > deadline:
                return rows, now
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


def figure(
    settings: Settings,
    *,
    n: int,
    rows: int,
    started: float,
    done: float,
    verdicts_done: float,
    pipeline_items_per_s: float,
) -> StoreFigure:
    seconds = max(done - started, 1e-9)
    return StoreFigure(
        database=db.redacted_url(settings).split("://", 1)[0].split("+", 1)[0],
        n=n,
        rows=rows,
        seconds=seconds,
        rows_per_s=rows / seconds,
        pipeline_items_per_s=pipeline_items_per_s,
        lag_s=max(done - verdicts_done, 0.0),
    )


async def capacity(settings: Settings, n: int) -> float:
    """Rows/s of the store's own write path: ``n`` synthetic verdicts in batches of
    DATABASE_STORE_BATCH_SIZE, one transaction each (then deleted)."""
    from deepfake_stream.store.writer import StoreHandler

    topic = f"bench-capacity-{uuid.uuid4().hex[:8]}"
    value = (
        Verdict.from_score(
            score=0.5,
            threshold=0.5,
            id="cap",
            model_id="tiny-tfidf",
            model_version="bench",
            backend="cpu",
            attempts=1,
            batch_size=64,
            latency_ms=1.0,
            scored_at="2026-01-01T00:00:00.000Z",
        )
        .model_dump_json()
        .encode()
    )
    records = [
        ConsumerRecord(topic, 0, i, 0, 0, None, value, None, 0, len(value), []) for i in range(n)
    ]
    engine = db.make_engine(settings)
    handler = StoreHandler(engine, verdict_topic=topic, dlq_topic=f"{topic}.dlq")
    size = settings.database.store_batch_size
    try:
        started = time.perf_counter()
        for i in range(0, n, size):
            await handler.handle(records[i : i + size])
        seconds = time.perf_counter() - started
        async with engine.begin() as conn:
            await conn.execute(delete(verdicts).where(verdicts.c.topic == topic))
    finally:
        await engine.dispose()
    return n / max(seconds, 1e-9)
