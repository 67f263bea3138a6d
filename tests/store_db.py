"""Verdict-store test helpers: a throw-away database per test (SQLite file, or a PostgreSQL
database with a random name on the server at 127.0.0.1:5432, dropped afterwards), records
and verdicts shaped like the real ones. A plain module: test files import what they use."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from deepfake_stream.core.settings import Settings, load_settings

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


def _in_thread(coro: Any) -> Any:
    """Run ``coro`` on a fresh loop in a thread: works from sync and async tests alike."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> str:
    """A fresh database; skipped (with the reason) where no PostgreSQL answers, except in CI
    (``CI`` set), where a missing server must fail the run rather than hide the tests."""
    name = f"test_store_{uuid.uuid4().hex[:12]}"
    try:
        _in_thread(_admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {PG_SERVER} ({exc}); set TEST_POSTGRES_URL")
    return f"{PG_SERVER}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _in_thread(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def db_settings(url: str, **more: Any) -> Settings:
    values: dict[tuple[str, str], Any] = {("database", "url"): url}
    for key, value in more.items():
        group, field = key.split("__")
        values[(group, field)] = value
    return load_settings(values)


def verdict_doc(item_id: str, *, tenant: str | None = None, **fields: Any) -> dict[str, Any]:
    doc = {
        "id": item_id,
        "model_id": "tiny-tfidf",
        "model_version": "2026.11.1+sha256:abcdefabcdef",
        "score": 0.9,
        "label": "ai",
        "is_fake": True,
        "threshold": 0.5,
        "backend": "cpu",
        "fallback_from": [],
        "attempts": 1,
        "batch_size": 1,
        "latency_ms": 5.0,
        "scored_at": "2026-12-01T10:30:45.123Z",
        "replay": False,
        "tenant": tenant,
        "metadata": {},
    }
    doc.update(fields)
    return doc


def record(
    value: bytes | dict[str, Any],
    *,
    topic: str = "detect.verdicts",
    partition: int = 0,
    offset: int = 0,
    headers: list[tuple[str, bytes]] | None = None,
    key: bytes | None = None,
) -> ConsumerRecord:
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=1_764_585_045_000,
        timestamp_type=0,
        key=key,
        value=raw,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(raw),
        headers=headers or [],
    )
