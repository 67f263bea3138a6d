"""The store SIGKILLed three times while 10,000 verdicts arrive: every verdict is in the
database exactly once (no loss; a redelivered message is not a second row). Real broker,
real PostgreSQL, the store as its own process (`deepfake-stream store`)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.store import db
from deepfake_stream.store.schema import verdicts
from tests.conftest import unique_settings
from tests.integration.harness import cli_command, settings_env
from tests.store_db import pg_url, verdict_doc

__all__ = ["pg_url"]
pytestmark = [pytest.mark.integration, pytest.mark.chaos]
N = 10_000
KILLS = 3


async def _stored(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(verdicts))).scalar()
        ids = (await conn.execute(select(func.count(verdicts.c.item_id.distinct())))).scalar()
    return int(total or 0), int(ids or 0)


async def test_store_sigkilled_three_times_during_10000_verdicts(
    kafka_bootstrap, pg_url, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = unique_settings(
        kafka_bootstrap, database__url=pg_url, database__store_batch_size=200
    )
    await ensure_topics(settings)
    env = settings_env(settings)
    log_path = tmp_path / "store.log"
    log = log_path.open("ab")  # appended to by every incarnation

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cli_command("store"), env=env, stdout=log, stderr=log)

    engine = db.make_engine(settings)
    await db.upgrade(engine)  # the store migrates too; the test counts rows from the start
    producer = make_producer(settings)
    await producer.start()
    store = start()
    started = time.monotonic()
    try:

        async def publish() -> None:
            for chunk in range(20):  # spread over the kills
                sends = []
                for i in range(chunk * 500, (chunk + 1) * 500):
                    doc = verdict_doc(f"k-{i}", tenant=f"t{i % 4}")
                    sends.append(
                        await producer.send(
                            settings.topics.verdicts,
                            json.dumps(doc).encode(),
                            key=doc["id"].encode(),
                        )
                    )
                await asyncio.gather(*sends)
                await asyncio.sleep(0.5)

        publishing = asyncio.create_task(publish())
        kills = 0
        for _ in range(KILLS):
            # Kill only once this incarnation has written something: a kill during its start
            # would test nothing.
            before = (await _stored(engine))[0] if kills else 0
            deadline = time.monotonic() + 90
            while (await _stored(engine))[0] <= before and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            store.send_signal(signal.SIGKILL)
            store.wait()
            kills += 1
            store = start()
        await publishing
        deadline = time.monotonic() + 150
        while (await _stored(engine))[1] < N and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # a late duplicate would show up now
        total, distinct = await _stored(engine)
    finally:
        await producer.stop()
        store.send_signal(signal.SIGTERM)
        try:
            store.wait(30)
        except subprocess.TimeoutExpired:
            store.kill()
            store.wait()
        await engine.dispose()
        log.close()
    print(
        f"store chaos: {N} verdicts, {kills} SIGKILLs, {total} rows, "
        f"{distinct} distinct ids, {time.monotonic() - started:.0f}s"
    )
    assert kills == KILLS
    assert distinct == N, log_path.read_text()[-3000:]  # nothing lost
    assert total == N  # no duplicate row for a redelivered message
    assert log_path.read_text().count("consuming") == KILLS + 1  # every incarnation ran
