"""The verdict store's HTTP API and audit log through the shim (real SQLite and PostgreSQL,
real tiny-tfidf; no broker): tenant isolation on every endpoint that returns a verdict,
admin-only audit, and what the audit log records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deepfake_stream.shim import create_app
from deepfake_stream.shim.auth import key_id
from deepfake_stream.store import db
from deepfake_stream.store.writer import StoreHandler
from tests.store_db import db_settings, record, store_url, verdict_doc

__all__ = ["store_url"]
pytestmark = pytest.mark.integration
KEYS = "ka:A,kb:B,kall,kadmin::admin"
TEXT = "The committee will reconvene next week to review the proposal in detail."


async def _seed(url: str) -> None:
    engine = db.make_engine(db_settings(url))
    await db.upgrade(engine)
    handler = StoreHandler(engine, verdict_topic="detect.verdicts", dlq_topic="detect.dlq")
    docs = [verdict_doc(f"a-{i}", tenant="A") for i in range(30)]
    docs += [verdict_doc(f"b-{i}", tenant="B") for i in range(20)]
    docs.append(verdict_doc("shared-id", tenant="A", score=0.2, label="human", is_fake=False))
    docs.append(verdict_doc("shared-id", tenant="B"))
    await handler.handle([record(d, offset=i) for i, d in enumerate(docs)])
    await engine.dispose()


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    asyncio.run(_seed(store_url))
    settings = db_settings(store_url, api__api_keys=KEYS, http__rate_limit_rps=0)
    app = create_app(settings, connect_kafka=False, connect_store=True)
    with TestClient(app, raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 30
        while not app.state.shim.store.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        yield c


def get(c: TestClient, key: str, path: str, **params: Any) -> Any:
    return c.get(path, params=params, headers={"X-API-Key": key})


def all_pages(c: TestClient, key: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        r = get(c, key, "/v1/verdicts", limit=7, **params, **extra)
        assert r.status_code == 200, r.text
        rows += r.json()["verdicts"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return rows


def test_a_bound_key_sees_only_its_tenant(client: TestClient) -> None:
    a = all_pages(client, "ka")
    assert len(a) == 31 and {r["tenant"] for r in a} == {"A"}
    assert len(all_pages(client, "kb")) == 21
    assert len(all_pages(client, "kall")) == 52  # unbound: today's behaviour, every tenant
    assert len(all_pages(client, "kall", tenant="B")) == 21
    assert get(client, "ka", "/v1/verdicts", tenant="B").status_code == 403
    assert get(client, "ka", "/v1/verdicts/b-1").status_code == 404  # not even its existence
    history = get(client, "ka", "/v1/verdicts/shared-id").json()["history"]
    assert [e["verdict"]["tenant"] for e in history] == ["A"]
    assert len(get(client, "kall", "/v1/verdicts/shared-id").json()["history"]) == 2
    stats = get(client, "kb", "/v1/stats", bucket="day").json()
    assert sum(c["count"] for c in stats["counts"]) == 21 and stats["tenant"] == "B"
    assert get(client, "kb", "/v1/stats", tenant="A").status_code == 403
    assert get(client, "ka", "/v1/verdicts", cursor="garbage!").status_code == 422
    assert get(client, "nope", "/v1/verdicts").status_code == 401
    assert get(client, "kall", "/v1/verdicts", since="2999-01-01T00:00:00Z").json() == {
        "verdicts": [],
        "next_cursor": None,
    }
    assert len(all_pages(client, "kall", until="2999-01-01T00:00:00+02:00")) == 52
    # What no database can hold is a 422, never a 5xx.
    assert get(client, "kall", "/v1/verdicts", tenant="a\x00b").status_code == 422
    assert get(client, "kall", "/v1/verdicts/x%00y").status_code == 422
    assert get(client, "kall", "/v1/stats", since="0001-01-01T00:00:00+14:00").status_code == 422


def test_a_bound_key_writes_only_its_tenant(client: TestClient) -> None:
    r = client.post("/v1/detect", json={"text": TEXT}, headers={"X-API-Key": "ka"})
    assert r.status_code == 200 and r.json()["tenant"] == "A"
    r = client.post("/v1/detect", json={"text": TEXT, "tenant": "B"}, headers={"X-API-Key": "ka"})
    assert r.status_code == 403
    r = client.post(
        "/v1/detect/batch",
        json={"items": [{"text": TEXT}, {"text": TEXT, "tenant": "B"}]},
        headers={"X-API-Key": "ka"},
    )
    assert r.status_code == 403
    r = client.post("/v1/detect", json={"text": TEXT, "tenant": "B"}, headers={"X-API-Key": "kall"})
    assert r.status_code == 200 and r.json()["tenant"] == "B"


def test_audit_log_records_requests_and_is_admin_only(client: TestClient) -> None:
    r = client.post(
        "/v1/detect", json={"id": "audited-1", "text": TEXT}, headers={"X-API-Key": "ka"}
    )
    assert r.status_code == 200
    rid = r.headers["X-Request-ID"]
    get(client, "wrong-key", "/v1/verdicts")
    assert get(client, "ka", "/v1/audit").status_code == 403
    assert get(client, "kall", "/v1/audit").status_code == 403
    deadline = time.monotonic() + 20
    while True:
        entries = get(client, "kadmin", "/v1/audit", limit=1000).json()["entries"]
        mine = [e for e in entries if e["request_id"] == rid]
        failed = [e for e in entries if e["status"] == 401]
        if (mine and failed) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [entry] = mine
    assert entry["key_id"] == key_id("ka") and entry["tenant"] == "A"
    assert entry["endpoint"] == "/v1/detect" and entry["method"] == "POST"
    assert entry["status"] == 200 and entry["model_id"] == "tiny-tfidf"
    assert entry["verdict_ids"] == ["audited-1"]
    assert entry["texts"][0]["length"] == len(TEXT) and len(entry["texts"][0]["sha256"]) == 64
    assert entry["client"]
    assert failed[0]["key_id"] == key_id("wrong-key") and failed[0]["tenant"] is None
    body = str(entries)
    assert TEXT not in body and "wrong-key" not in body and "'ka'" not in body
    # An admin bound to no tenant filters by tenant; audit rows of a bound key carry it.
    only_a = get(client, "kadmin", "/v1/audit", tenant="A", limit=1000).json()["entries"]
    assert only_a and {e["tenant"] for e in only_a} == {"A"}
