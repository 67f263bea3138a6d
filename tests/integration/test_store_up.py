"""`deepfake-stream up` keeps a verdict history that the shim serves: 2,000 items (and some
that dead-letter) -> one verdict row each and every dead letter row, fields as published,
and an item scored twice has both verdicts, newest first (real SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from deepfake_stream.store import db
from deepfake_stream.store.schema import dead_letters, verdicts
from tests.store_db import db_settings, store_url
from tests.system import Outcome, deepfake_up, read_outputs, wait_for_verdict_of

__all__ = ["store_url"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 2,000 items through `up`: 40-80 s
N = 2000
BAD_JSON = 10
UNKNOWN_MODEL = 10


async def _counts(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        v = (await conn.execute(select(func.count()).select_from(verdicts))).scalar()
        d = (await conn.execute(select(func.count()).select_from(dead_letters))).scalar()
    return int(v or 0), int(d or 0)


async def _wait_rows(engine, want_v: int, want_d: int, timeout: float) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = await _counts(engine)
        if (got[0] >= want_v and got[1] >= want_d) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def test_up_stores_every_verdict_and_dead_letter(tmp_path, store_url: str) -> None:  # type: ignore[no-untyped-def]
    with deepfake_up(tmp_path, DATABASE_URL=store_url, WORKER_CPU_WORKERS="1") as up:
        await wait_for_verdict_of(up.bootstrap, "probe-0")
        producer = AIOKafkaProducer(bootstrap_servers=up.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            sends = []
            for i in range(N):
                doc = {
                    "id": f"u-{i}",
                    "text": f"Sample text {i} on topic {i % 13}.",
                    "tenant": f"t{i % 3}",
                    "metadata": {"n": i},
                }
                sends.append(
                    await producer.send(
                        "detect.in", json.dumps(doc).encode(), key=doc["id"].encode()
                    )
                )
            for i in range(BAD_JSON):
                sends.append(
                    await producer.send("detect.in", b"{not json", key=f"bad-{i}".encode())
                )
            for i in range(UNKNOWN_MODEL):
                doc = {"id": f"m-{i}", "text": "x y z", "model_id": "no-such-model", "tenant": "t0"}
                sends.append(
                    await producer.send(
                        "detect.in", json.dumps(doc).encode(), key=doc["id"].encode()
                    )
                )
            await asyncio.gather(*sends)
            out = Outcome()
            await read_outputs(up.bootstrap, out, lambda o: "u-0" in o.verdicts, 120)
            # The same id again with an edited text: a re-score, a second row in its history.
            rescore = {
                "id": "u-0",
                "text": "A completely different text, edited later.",
                "tenant": "t0",
            }
            await producer.send_and_wait("detect.in", json.dumps(rescore).encode(), key=b"u-0")
        finally:
            await producer.stop()
        engine = db.make_engine(db_settings(store_url))
        try:
            want_v, want_d = N + 2, BAD_JSON + UNKNOWN_MODEL  # + the probe and the re-score
            got = await _wait_rows(engine, want_v, want_d, timeout=240)
            out = Outcome()
            await read_outputs(
                up.bootstrap,
                out,
                lambda o: len(o.dead) >= want_d and len(o.verdicts.get("u-0", [])) >= 2,
                60,
            )
            await asyncio.sleep(2)  # a few more store batches: any extra row would show now
            got = await _counts(engine)
            async with engine.connect() as conn:
                rows = (await conn.execute(select(verdicts))).all()
                dls = (await conn.execute(select(dead_letters))).all()
        finally:
            await engine.dispose()
        port = up.log().split("HTTP shim on http://127.0.0.1:")[1].split(" ")[0]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            history = (await http.get("/v1/verdicts/u-0")).json()["history"]
            bad = (await http.get("/v1/verdicts/m-3")).json()["history"]
    assert got == (want_v, want_d), up.log()[-3000:]
    by_id: dict[str, list] = {}
    for r in rows:
        by_id.setdefault(r.item_id, []).append(r)
    assert {f"u-{i}" for i in range(N)} <= set(by_id)
    assert len(by_id["u-0"]) == 2 and all(len(by_id[f"u-{i}"]) == 1 for i in range(1, N))
    published = {v["id"]: v for vs in out.verdicts.values() for v in vs[-1:]}
    for r in rows:
        if r.item_id in ("u-0", "probe-0"):
            continue
        v = published[r.item_id]
        assert r.body == v  # the whole verdict, as published
        assert (r.tenant, r.model_id, r.model_version, r.label, r.backend, r.replay) == (
            v["tenant"],
            v["model_id"],
            v["model_version"],
            v["label"],
            v["backend"],
            v["replay"],
        )
        assert r.score == pytest.approx(v["score"]) and r.threshold == pytest.approx(v["threshold"])
    reasons = sorted(d.reason for d in dls)
    assert reasons == ["invalid_json"] * BAD_JSON + ["unknown_model"] * UNKNOWN_MODEL
    for d in dls:
        assert d.stage == "router" and d.original_topic == "detect.in"
        assert d.original_offset is not None and d.value_length > 0
    assert [e["kind"] for e in history] == ["verdict", "verdict"]
    first, second = history[1]["verdict"], history[0]["verdict"]
    assert first["scored_at"] <= second["scored_at"]
    assert [e["dead_letter"]["reason"] for e in bad] == ["unknown_model"]
    assert bad[0]["dead_letter"]["tenant"] == "t0"
