"""PostgreSQL unreachable for ~10 s while verdicts arrive: the store waits (bounded
back-off, no exit, no crash loop) and catches up; nothing is lost or stored twice.

The shared PostgreSQL server cannot be stopped, so the store reaches it through a small TCP
proxy in this test: "down" closes every connection through it and refuses new ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from sqlalchemy import func, select

from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.store import db
from deepfake_stream.store.schema import verdicts
from deepfake_stream.store.service import serve_store
from tests.conftest import unique_settings
from tests.store_db import db_settings, pg_url, verdict_doc

__all__ = ["pg_url"]
pytestmark = [pytest.mark.integration, pytest.mark.chaos]
N = 4000
OUTAGE_S = 10


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self.accepted = 0
        self.refused = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.down()
        if self._server:
            self._server.close()

    def down(self) -> None:
        self.up = False
        for w in list(self._writers):
            w.transport.abort()  # a reset, as when the server goes away
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def _stored(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(verdicts))).scalar()
        ids = (await conn.execute(select(func.count(verdicts.c.item_id.distinct())))).scalar()
    return int(total or 0), int(ids or 0)


async def test_store_waits_out_a_database_outage_and_catches_up(kafka_bootstrap, pg_url) -> None:  # type: ignore[no-untyped-def]
    proxy = Proxy(5432)
    await proxy.start()
    via_proxy = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    settings = unique_settings(
        kafka_bootstrap, database__url=via_proxy, database__store_batch_size=100
    )
    await ensure_topics(settings)
    direct = db.make_engine(db_settings(pg_url))  # the test's own view, not through the proxy
    await db.upgrade(direct)
    producer = make_producer(settings)
    await producer.start()
    stop = asyncio.Event()
    store = asyncio.create_task(serve_store(settings, stop=stop))
    try:

        async def publish(start: int, end: int) -> None:
            for i in range(start, end):
                doc = verdict_doc(f"o-{i}")
                await producer.send(
                    settings.topics.verdicts, json.dumps(doc).encode(), key=doc["id"].encode()
                )
            await producer.flush()

        await publish(0, N // 2)
        deadline = time.monotonic() + 60
        while (await _stored(direct))[0] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        proxy.down()
        outage_started = time.monotonic()
        await publish(N // 2, N)  # keeps arriving while the database is away
        during = (await _stored(direct))[0]
        while time.monotonic() - outage_started < OUTAGE_S:
            assert not store.done(), "the store exited while the database was down"
            await asyncio.sleep(0.5)
        stalled = (await _stored(direct))[0]
        proxy.up = True
        recovered = time.monotonic()
        deadline = recovered + 90
        while (await _stored(direct))[1] < N and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        caught_up_s = time.monotonic() - recovered
        await asyncio.sleep(2)
        total, distinct = await _stored(direct)
        assert not store.done()
    finally:
        stop.set()
        await asyncio.wait_for(store, 60)
        await producer.stop()
        await proxy.stop()
        await direct.dispose()
    print(
        f"db outage {OUTAGE_S}s: rows before {during}, during {stalled}, caught up "
        f"{caught_up_s:.1f}s after; refused {proxy.refused} connections"
    )
    assert stalled < N, "the outage did not stop writes: the test tested nothing"
    assert proxy.refused >= 1  # the store kept trying, through the proxy, while it was down
    assert proxy.refused < 60  # ... with back-off, not a tight loop
    assert distinct == N and total == N
