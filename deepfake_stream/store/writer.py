"""The store's stage handler: a batch of verdicts and dead letters in one transaction.

``handle`` returns only after the transaction commits, and StageRunner commits the Kafka
offsets only after ``handle`` returns: at-least-once into the database. A redelivered
message hits the unique (topic, partition, offset) and is skipped, so it is stored once;
a re-score is a new message, hence a new row. When the database is unreachable ``handle``
raises and StageRunner re-reads the batch with bounded back-off (the same path every stage
uses), so the store waits and catches up without exiting.

Rows are cleaned first (rows.py), so no client-controlled byte should make the database
refuse one. Should one still be refused (a data error, not a connection error), the batch is
written row by row and the refused row is logged and skipped: one bad message never stalls
the store (the message itself stays on its topic).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import Table
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deepfake_stream.core.stage import BatchResult
from deepfake_stream.store.rows import dead_letter_row, verdict_row
from deepfake_stream.store.schema import dead_letters, verdicts

log = logging.getLogger(__name__)
SOURCE = ("topic", "partition", "offset")


async def insert_new(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows``, skipping any whose source message is stored already; returns how many
    were new."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).on_conflict_do_nothing(index_elements=list(SOURCE))
    # RETURNING counts the new rows on both databases (asyncpg reports no rowcount for a
    # multi-row insert); SQLAlchemy sends the rows as a few multi-VALUES statements.
    result = await conn.execute(statement.returning(table.c.pk), rows)
    return len(result.all())


class StoreHandler:
    def __init__(self, engine: AsyncEngine, *, verdict_topic: str, dlq_topic: str) -> None:
        self.engine = engine
        self.verdict_topic = verdict_topic
        self.dlq_topic = dlq_topic
        self.verdicts = 0
        self.dead = 0
        self.skipped = 0
        """Messages on the verdict topic that are not verdicts: logged, never stored."""
        self.redelivered = 0
        """Messages stored already (re-read after a crash or a failed batch): skipped."""
        self.rejected = 0
        """Messages the database refused even after cleaning: logged and skipped."""
        self.rejected_now = 0

    async def handle(self, records: Sequence[ConsumerRecord]) -> BatchResult:
        now = datetime.now(UTC)
        v_rows: list[dict[str, Any]] = []
        d_rows: list[dict[str, Any]] = []
        for r in records:
            if r.topic == self.dlq_topic:
                d_rows.append(dead_letter_row(r, now))
                continue
            row = verdict_row(r, now)
            if row is None:
                self.skipped += 1
                log.warning("%s/%d@%d is not a verdict; not stored", r.topic, r.partition, r.offset)
            else:
                v_rows.append(row)
        try:
            async with self.engine.begin() as conn:  # one transaction; committed on exit
                new = await insert_new(conn, verdicts, v_rows)
                new += await insert_new(conn, dead_letters, d_rows)
        except (DataError, IntegrityError, UnicodeError) as exc:
            log.warning("batch refused (%s); writing it row by row", type(exc).__name__)
            new = await self._one_by_one(verdicts, v_rows) + await self._one_by_one(
                dead_letters, d_rows
            )
        self.redelivered += len(v_rows) + len(d_rows) - new - self.rejected_now
        self.rejected_now = 0
        self.verdicts += len(v_rows)
        self.dead += len(d_rows)
        return BatchResult()

    async def _one_by_one(self, table: Table, rows: list[dict[str, Any]]) -> int:
        new = 0
        for row in rows:
            try:
                async with self.engine.begin() as conn:
                    new += await insert_new(conn, table, [row])
            except (DataError, IntegrityError, UnicodeError) as exc:
                self.rejected += 1
                self.rejected_now += 1
                log.error(
                    "%s/%d@%d refused by the database (%s); not stored",
                    row["topic"],
                    row["partition"],
                    row["offset"],
                    type(exc).__name__,
                )
        return new
