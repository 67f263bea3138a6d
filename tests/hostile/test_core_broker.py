"""Hostile records through the real broker: nothing a producer writes stops a consumer, and
every item gets exactly one verdict or one dead letter with the right reason."""

from __future__ import annotations

import json

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.core.reader import read_topic
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas.dead_letter import TRUNCATED_HEADER
from tests.conftest import unique_settings
from tests.hostile.core_raw import RawHeaderKey, item, produce_raw
from tests.integration.harness import collect, running, wait_live

pytestmark = pytest.mark.integration


async def test_a_header_key_that_is_not_utf8_gets_a_verdict_and_blocks_nothing(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap)
    key, value, _ = item("bad-key")
    records = [
        *(item(f"before-{i}") for i in range(3)),
        (key, value, [(RawHeaderKey(b"\xff\xfe\xc3("), b"v"), ("traceparent", b"\xff")]),
        *(item(f"after-{i}") for i in range(3)),
    ]
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        await produce_raw(settings, records)
        results = await collect(settings, verdicts=7, timeout=60, settle=1.0)
    # running() re-raises a service that died: the router and worker both survived.
    assert sorted(a.json()["id"] for a in results.verdicts) == sorted(
        [*(f"before-{i}" for i in range(3)), "bad-key", *(f"after-{i}" for i in range(3))]
    )
    assert results.dead == []
    # A group-less reader (tail, replay, the shim's reply reader) reads it too.
    seen = [
        a
        async for a in read_topic(
            settings, settings.topics.input, from_beginning=True, count=7, timeout=20
        )
    ]
    odd = next(a for a in seen if a.key == "bad-key")
    assert odd.value == value


async def test_oversize_inputs_become_dead_letters_that_fit(kafka_bootstrap: str) -> None:
    """4,194,000 bytes (just under KAFKA_MAX_REQUEST_BYTES) and 6 MB (over it, which the
    embedded broker accepts): each one ``too_large`` dead letter, cut to fit, with
    ``dlq.truncated``; the items behind them flow."""
    settings = unique_settings(kafka_bootstrap)
    limit = settings.kafka.max_request_bytes
    near = json.dumps({"id": "near", "text": "n" * (4_194_000 - 26)}).encode()
    over = json.dumps({"id": "over", "text": "o" * 6_000_000}).encode()
    assert len(near) < limit < len(over)
    records = [item("first"), (b"near", near, []), (b"over", over, []), item("last")]
    async with running(
        lambda stop: serve_router(settings, stop=stop),
        lambda stop: serve_worker(settings, "cpu", stop=stop),
    ):
        await wait_live(settings, "cpu", "tiny-tfidf")
        await produce_raw(settings, records)
        results = await collect(settings, verdicts=2, dead=2, timeout=60, settle=1.0)
    assert sorted(a.json()["id"] for a in results.verdicts) == ["first", "last"]
    assert len(results.dead) == 2
    for letter, original in zip(
        sorted(results.dead, key=lambda a: a.offset), [near, over], strict=True
    ):
        assert letter.headers["dlq.reason"] == "too_large"
        assert letter.headers[TRUNCATED_HEADER] == str(len(original))
        assert 0 < len(letter.value) < limit and original.startswith(letter.value)
