"""Holds are bounded and block nothing: an item whose model has no live backend waits at
most ROUTER_HOLD_MAX_S, then is dead-lettered ``no_live_backend``; the items behind it on
the same partition are routed meanwhile, and the router's commit stops at the held offset."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from deepfake_stream.services import serve_router, serve_worker
from routing.registry import registry_from_dict
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, register_doubles
from tests.hostile.core_raw import produce_raw
from tests.integration.harness import collect, running, wait_live

pytestmark = pytest.mark.integration

HOLD_S = 5.0


def _registry():  # type: ignore[no-untyped-def]
    register_doubles()
    models = {
        "m": {"kind": "echo", "size": "small", "version": "t1", "backends": ["cpu"]},
        "g": {"kind": "echo", "size": "small", "version": "t1", "backends": ["gpu"]},
    }
    return registry_from_dict({"models": models}, default_model="m", source="test")


def _doc(item_id: str, model_id: str) -> tuple[bytes, bytes, list]:
    doc = {"id": item_id, "text": f"text of {item_id}", "model_id": model_id}
    return item_id.encode(), json.dumps(doc).encode(), []


async def _committed(settings, tp: TopicPartition) -> int | None:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=f"{settings.kafka.group_prefix}.router",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def test_a_held_item_blocks_nothing_and_expires_as_no_live_backend(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap, router__hold_max_s=HOLD_S)
    registry = _registry()
    spec = registry.models["m"].spec()
    tp = TopicPartition(settings.topics.input, 0)
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": EchoDetector(spec)}, stop=stop
        ),
    ):
        await wait_live(settings, "cpu", "m")
        started = time.monotonic()
        # Offset 0 of partition 0 wants the GPU, which has no worker; 1..5 can be routed.
        await produce_raw(settings, [_doc("stuck", "g"), *(_doc(f"m-{i}", "m") for i in range(5))])
        flowing = await collect(settings, verdicts=5, timeout=30)
        assert flowing.verdict_ids() == {f"m-{i}" for i in range(5)}
        if time.monotonic() - started < HOLD_S - 0.5:  # not yet expired: commit held back
            assert await _committed(settings, tp) in (None, 0)
        results = await collect(settings, verdicts=5, dead=1, timeout=30)
        [letter] = results.dead
        assert letter.key == "stuck" and letter.headers["dlq.reason"] == "no_live_backend"
        assert letter.headers["dlq.stage"] == "router"
        # The items behind it were scored long before it expired: it blocked nothing.
        scored_by = max(a.timestamp_ms for a in results.verdicts)
        assert letter.timestamp_ms - scored_by > 1_000 * (HOLD_S - 2)
        async with asyncio.timeout(10):
            while await _committed(settings, tp) != 6:  # all handled: the commit moves on
                await asyncio.sleep(0.2)
    assert len(results.verdicts) == 5
