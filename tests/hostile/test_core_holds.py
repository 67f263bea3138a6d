"""Holds are bounded and block nothing: an item whose model has no live backend waits at
most ROUTER_HOLD_MAX_S, then is dead-lettered ``no_live_backend``; the items behind it on
the same partition are routed meanwhile, and the router's commit stops at the held offset."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.service import serve_router
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


class _Live:
    def __init__(self) -> None:
        self.backends: set[str] = set()

    def alive(self, backend: str, model_id: str | None = None) -> bool:
        return backend in self.backends

    def live_backends(self) -> dict[str, list[str]]:
        return {b: [] for b in self.backends}


def _record(offset: int, item_id: str, model_id: str, partition: int = 0):  # type: ignore[no-untyped-def]
    from aiokafka.structs import ConsumerRecord

    value = _doc(item_id, model_id)[1]
    return ConsumerRecord("in", partition, offset, 0, 0, None, value, None, 0, len(value), [])


async def test_router_holds_in_memory_commits_below_them_and_forgets_revoked_ones() -> None:
    from deepfake_stream.routing.router import Router

    settings = unique_settings("127.0.0.1:9", router__hold_max_s=60.0)
    live = _Live()
    live.backends.add("cpu")
    router = Router(settings, _registry(), live)  # type: ignore[arg-type]
    tp0, tp1 = TopicPartition("in", 0), TopicPartition("in", 1)
    first = await router.handle(
        [
            _record(0, "g-0", "g"),
            _record(1, "m-1", "m"),
            _record(2, "g-2", "g"),
            _record(0, "m-p1", "m", partition=1),
        ]
    )
    assert [o.key for o in first.out] == [b"m-1", b"m-p1"]  # routed past the held ones
    assert first.commit == {tp0: 0} and first.hold == {}
    assert router.pending()
    # A re-read of a held record is not held twice; a later record is routed.
    again = await router.handle([_record(2, "g-2", "g"), _record(3, "m-3", "m")])
    assert [o.key for o in again.out] == [b"m-3"] and again.commit == {tp0: 0}
    live.backends.add("gpu")
    resolved = await router.handle([])
    assert sorted(o.key for o in resolved.out) == [b"g-0", b"g-2"]
    assert resolved.commit == {tp0: 4} and not router.pending()
    live.backends.discard("gpu")
    await router.handle([_record(4, "g-4", "g")])
    router.revoked([tp0])
    assert not router.pending() and router._held_bytes == 0
    assert tp1 not in first.commit
