"""Hostile items through the real broker, router and worker: each gets exactly one dead
letter with the codec's reason (the same answer the shim gives), valid items around them
keep flowing, and the correlation header a ``?via=stream`` request rides on is carried onto
the verdict or dead letter, and onto nothing else's."""

from __future__ import annotations

import hashlib
import json

import pytest

from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.core.tracing import CORRELATION_HEADER
from tests.integration.harness import collect, running, wait_live
from tests.integration.test_redis import _setup

pytestmark = pytest.mark.integration
TRACEPARENT = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"

HOSTILE = {
    "surrogate-tenant": (b'{"id": "st", "text": "hello", "tenant": "\\ud800"}', "invalid_json"),
    "surrogate-metadata": (b'{"id": "sm", "text": "hi", "metadata": {"k": "\\udfff"}}',
                           "invalid_json"),
    "nan": (b'{"id": "nan", "text": "hello", "metadata": {"k": NaN}}', "invalid_json"),
    "infinity": (b'{"id": "inf", "text": "hello", "metadata": {"k": Infinity}}', "invalid_json"),
    "deep-ignored": (
        b'{"id": "deep", "text": "hello", "ignored": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        "invalid_schema",
    ),
    "deep-metadata": (
        b'{"id": "deep2", "text": "hi", "metadata": {"k": ' + b"[" * 40 + b"]" * 40 + b"}}",
        "invalid_schema",
    ),
    "blank-text": (b'{"id": "blank", "text": " \\n\\t\\u3000"}', "invalid_schema"),
}  # fmt: skip


async def test_hostile_items_are_dead_lettered_once_and_valid_items_flow(
    kafka_bootstrap: str,
) -> None:
    settings, _, services = _setup(kafka_bootstrap)  # no Redis
    valid = [{"id": f"ok-{i}", "text": f"a valid text number {i}"} for i in range(4)]
    async with running(*services):
        await wait_live(settings, "cpu", "m")
        await ensure_topics(settings)
        producer = make_producer(settings, role="test")
        await producer.start()
        try:
            sends = [valid[0], *HOSTILE.values(), valid[1], valid[2], valid[3]]
            for n, doc in enumerate(sends):
                raw = json.dumps(doc).encode() if isinstance(doc, dict) else doc[0]
                headers = [("traceparent", TRACEPARENT), (CORRELATION_HEADER, f"c{n}".encode())]
                await producer.send_and_wait(settings.topics.input, raw, headers=headers)
        finally:
            await producer.stop()
        results = await collect(settings, verdicts=len(valid), dead=len(HOSTILE), settle=1.0)
    assert sorted(a.json()["id"] for a in results.verdicts) == [d["id"] for d in valid]
    for a in results.verdicts:
        text = next(d["text"] for d in valid if d["id"] == a.json()["id"])
        assert a.json()["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert len(results.dead) == len(HOSTILE)
    by_value = {a.value: a for a in results.dead}
    for n, (raw, reason) in enumerate(HOSTILE.values(), start=1):
        letter = by_value[raw]  # the original bytes, unchanged
        assert letter.headers["dlq.reason"] == reason, (raw[:60], letter.headers)
        assert letter.headers["dlq.stage"] == "router"
        assert letter.headers[CORRELATION_HEADER] == f"c{n}"
    # Each verdict carries its own item's correlation id (sent in order: ok-0 first).
    got = {a.json()["id"]: a.headers[CORRELATION_HEADER] for a in results.verdicts}
    assert got == {"ok-0": "c0", **{f"ok-{i}": f"c{len(HOSTILE) + i}" for i in (1, 2, 3)}}
