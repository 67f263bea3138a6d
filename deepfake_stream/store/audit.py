"""The shim's audit log: a bounded queue and one background writer.

A request never waits for the database: ``record`` only enqueues. The writer inserts in
batches. While the database is down it keeps its batch and retries with bounded back-off;
the queue then fills, and once ``DATABASE_AUDIT_QUEUE_SIZE`` rows wait, new rows are dropped
and counted (logged once a minute at most): the API stays up, the gap shows in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from deepfake_stream.store.schema import audit_log

log = logging.getLogger(__name__)
BATCH = 500


class AuditWriter:
    def __init__(self, *, queue_size: int, retry_max_s: float) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self.retry_max_s = retry_max_s
        self.written = 0
        self.dropped = 0
        self._last_drop_log = 0.0
        self._task: asyncio.Task[None] | None = None
        self._engine: AsyncEngine | None = None

    def record(self, row: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 60:
                self._last_drop_log = now
                log.warning(
                    "audit queue full (database slow or down): %d audit rows dropped so far",
                    self.dropped,
                )

    def start(self, engine: AsyncEngine) -> None:
        """Start writing (once the schema is migrated); rows recorded before are kept."""
        self._engine = engine
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self, flush_s: float = 5.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), flush_s)  # best effort: flush what waits
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        assert self._engine is not None
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            delay = 0.5
            while True:
                try:
                    async with self._engine.begin() as conn:
                        await conn.execute(insert(audit_log), batch)
                    self.written += len(batch)
                    break
                except (DataError, IntegrityError, UnicodeError):
                    await self._one_by_one(batch)  # a refused row must not block the log
                    break
                except Exception as exc:
                    log.warning(
                        "audit write of %d rows failed (%s); retrying in %.1fs",
                        len(batch),
                        type(exc).__name__,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
            for _ in batch:
                self.queue.task_done()

    async def _one_by_one(self, batch: list[dict[str, Any]]) -> None:
        assert self._engine is not None
        for row in batch:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(audit_log), [row])
                self.written += 1
            except Exception as exc:
                self.dropped += 1
                log.error("audit row refused by the database (%s); dropped", type(exc).__name__)
