"""The verdict store against real databases (a SQLite file and PostgreSQL at 127.0.0.1:5432,
a fresh database per test): migrations, idempotent writes, history, keyset pages under
concurrent inserts, stats, retention."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text

from deepfake_stream.schemas.dead_letter import DeadLetter
from deepfake_stream.store import db, queries
from deepfake_stream.store.schema import audit_log, dead_letters, metadata, verdicts
from deepfake_stream.store.writer import StoreHandler
from tests.store_db import db_settings, record, store_url, verdict_doc

__all__ = ["store_url"]  # the fixture, imported for pytest
pytestmark = pytest.mark.integration


async def _count(engine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar() or 0)


async def _tables(engine) -> set[str]:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect

    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migrations_upgrade_an_empty_database_and_match_the_schema(store_url: str) -> None:
    engine = db.make_engine(db_settings(store_url))
    try:
        assert await db.current_revision(engine) is None
        await db.upgrade(engine)
        assert await db.current_revision(engine) == db.head_revision() == "0002"
        assert {"verdicts", "dead_letters", "audit_log"} <= await _tables(engine)
        await db.upgrade(engine)  # a second upgrade (every service start) is a no-op

        def diff(conn):  # type: ignore[no-untyped-def]
            from alembic.autogenerate import compare_metadata
            from alembic.migration import MigrationContext

            return compare_metadata(MigrationContext.configure(conn), metadata)

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []  # schema.py mirrors the migrations
    finally:
        await engine.dispose()


async def test_migrations_upgrade_a_database_at_the_previous_revision(store_url: str) -> None:
    engine = db.make_engine(db_settings(store_url))
    try:
        await db.upgrade(engine, "0001")
        assert "audit_log" not in await _tables(engine)
        await StoreHandler(engine, verdict_topic="detect.verdicts", dlq_topic="detect.dlq").handle(
            [record(verdict_doc("kept"))]
        )
        await db.upgrade(engine)
        assert await db.current_revision(engine) == "0002"
        assert [e["verdict"]["id"] for e in await queries.history(engine, "kept", None)] == ["kept"]
        assert await _count(engine, audit_log) == 0
    finally:
        await engine.dispose()


async def test_redelivery_is_stored_once_and_a_rescore_is_a_new_row(store_url: str) -> None:
    engine = db.make_engine(db_settings(store_url))
    await db.upgrade(engine)
    handler = StoreHandler(engine, verdict_topic="detect.verdicts", dlq_topic="detect.dlq")
    first = record(verdict_doc("x", scored_at="2026-12-01T10:00:00.000Z"), offset=1)
    letter = DeadLetter(
        reason="model_error",
        stage="cpu",
        error_class="RuntimeError",
        error_message="boom",
        original_topic="detect.backend.cpu",
        original_partition=0,
        original_offset=7,
        attempts=1,
    )
    headers = [(k, v) for k, v in letter.headers() if k != "dlq.failed_at"]
    headers.append(("dlq.failed_at", b"2026-12-01T12:00:00.000Z"))  # between the two verdicts
    dead = record(b'{"id": "x", "text": "t"}', topic="detect.dlq", offset=0, headers=headers)
    rescore = record(
        verdict_doc(
            "x",
            score=0.1,
            label="human",
            is_fake=False,
            replay=True,
            scored_at="2026-12-02T10:00:00.000Z",
        ),
        offset=2,
    )
    try:
        await handler.handle([first, dead])
        await handler.handle([first, dead, rescore])  # redelivered, plus a re-score
        assert handler.redelivered == 2
        assert await _count(engine, verdicts) == 2
        assert await _count(engine, dead_letters) == 1
        history = await queries.history(engine, "x", None)
        assert [e["kind"] for e in history] == ["verdict", "dead_letter", "verdict"]
        assert history[0]["verdict"]["label"] == "human" and history[0]["verdict"]["replay"]
        assert history[2]["verdict"]["label"] == "ai"
        assert history[1]["dead_letter"]["reason"] == "model_error"
        assert history[1]["dead_letter"]["original"]["offset"] == 7
        assert await queries.history(engine, "x", "other-tenant") == []
    finally:
        await engine.dispose()


async def test_pages_return_every_row_once_while_inserts_continue(store_url: str) -> None:
    engine = db.make_engine(db_settings(store_url))
    await db.upgrade(engine)
    handler = StoreHandler(engine, verdict_topic="detect.verdicts", dlq_topic="detect.dlq")
    await handler.handle([record(verdict_doc(f"old-{i}"), offset=i) for i in range(500)])
    done = asyncio.Event()

    async def keep_inserting() -> None:
        offset = 10_000
        while not done.is_set():
            await handler.handle(
                [record(verdict_doc(f"new-{offset + i}"), offset=offset + i) for i in range(7)]
            )
            offset += 7
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_inserting())
    seen: list[str] = []
    cursor = None
    try:
        while True:
            rows, cursor = await queries.page_verdicts(
                engine, queries.VerdictFilter(), limit=37, cursor=cursor
            )
            seen += [r["id"] for r in rows]
            await asyncio.sleep(0.01)  # let the writer get rows in between pages
            if cursor is None:
                break
    finally:
        done.set()
        await writer
    try:
        old = [s for s in seen if s.startswith("old-")]
        assert len(old) == len(set(old)) == 500
        assert len(seen) == len(set(seen))
        assert await _count(engine, verdicts) > 500  # inserts really ran during paging
        with pytest.raises(queries.BadCursor):
            await queries.page_verdicts(engine, queries.VerdictFilter(), limit=5, cursor="zz!")
    finally:
        await engine.dispose()


async def test_filters_stats_and_retention(store_url: str) -> None:
    engine = db.make_engine(db_settings(store_url))
    await db.upgrade(engine)
    handler = StoreHandler(engine, verdict_topic="detect.verdicts", dlq_topic="detect.dlq")
    now = datetime.now(UTC)
    stamp = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    ancient = (now - timedelta(days=400)).isoformat().replace("+00:00", "Z")
    docs = [verdict_doc(f"a-{i}", tenant="A", scored_at=stamp) for i in range(5)]
    docs += [
        verdict_doc(f"b-{i}", tenant="B", score=0.1, label="human", is_fake=False, scored_at=stamp)
        for i in range(3)
    ]
    docs.append(verdict_doc("gone", tenant="A", scored_at=ancient))
    await handler.handle([record(d, offset=i) for i, d in enumerate(docs)])
    try:
        rows, _ = await queries.page_verdicts(
            engine, queries.VerdictFilter(tenant="B"), limit=100, cursor=None
        )
        assert sorted(r["id"] for r in rows) == ["b-0", "b-1", "b-2"]
        rows, _ = await queries.page_verdicts(
            engine,
            queries.VerdictFilter(label="ai", since=now - timedelta(days=1)),
            limit=100,
            cursor=None,
        )
        assert len(rows) == 5
        counts = await queries.stats(engine, tenant=None, since=None, until=None, bucket="hour")
        assert sum(c["count"] for c in counts) == 9
        by = {(c["label"], c["bucket"][:13]) for c in counts if c["bucket"] >= stamp[:13]}
        assert by == {("ai", stamp[:13]), ("human", stamp[:13])}
        only_b = await queries.stats(engine, tenant="B", since=None, until=None, bucket="day")
        assert [(c["label"], c["count"]) for c in only_b] == [("human", 3)]
        async with engine.begin() as conn:
            await conn.execute(
                insert(audit_log),
                [{"at": now - timedelta(days=40), "method": "GET", "endpoint": "/", "status": 200}],
            )
        deleted = await queries.prune(engine, verdict_days=90, audit_days=30)
        assert deleted == {"verdicts": 1, "dead_letters": 0, "audit_log": 1}
        assert await queries.history(engine, "gone", None) == []
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM verdicts"))).scalar() == 8
    finally:
        await engine.dispose()


async def test_hostile_bytes_never_stall_the_store(store_url: str) -> None:
    engine = db.make_engine(db_settings(store_url))
    await db.upgrade(engine)
    handler = StoreHandler(engine, verdict_topic="detect.verdicts", dlq_topic="detect.dlq")
    nasty = verdict_doc("n\x00ul", tenant="t\ud800", metadata={"k\x00": ["\udfff", "x\x00"]})
    raw = json.dumps(nasty).encode()  # lone surrogates travel as \\ud800 escapes
    deep = b"[" * 100_000 + b"]" * 100_000
    dead_nul = b'{"id": "d\\u0000", "tenant": "\\ud800"}'
    try:
        await handler.handle(
            [
                record(raw, offset=0),
                record(deep, offset=1),  # not a verdict: skipped, never a crash
                record(dead_nul, topic="detect.dlq", offset=0),
                record(deep, topic="detect.dlq", offset=1, key=b"k\x00"),
            ]
        )
        assert await _count(engine, verdicts) == 1 and await _count(engine, dead_letters) == 2
        assert handler.skipped == 1 and handler.rejected == 0
        [entry] = await queries.history(engine, "n\ufffdul", None)
        assert entry["verdict"]["tenant"] == "t?"
        assert [e["kind"] for e in await queries.history(engine, "d\ufffd", None)] == [
            "dead_letter"
        ]
    finally:
        await engine.dispose()
