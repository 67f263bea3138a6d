"""A worker whose inference hangs: each batch is bounded by WORKER_BATCH_TIMEOUT_S, the
worker stops advertising its models while it cannot make progress, the item that hangs it
is dead-lettered ``model_error`` after WORKER_MAX_BATCH_ATTEMPTS, and it advertises again
once batches succeed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from deepfake_stream.services import serve_worker
from models.base import Score
from routing.registry import registry_from_dict
from schemas import RoutedItem, RoutingEnvelope
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, register_doubles
from tests.hostile.core_raw import produce_raw
from tests.integration.harness import collect, running, wait_live, wait_not_live

pytestmark = pytest.mark.integration


class HangsOnMarker(EchoDetector):
    """Blocks the inference thread for 2 s on any batch holding "HANG" (a stuck kernel)."""

    hanging = 0

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        if any("HANG" in t for t in texts):
            type(self).hanging += 1
            threading.Event().wait(2.0)
            type(self).hanging -= 1
            return [Score(score=0.5) for _ in texts]  # too late: the batch timed out
        return super().predict_batch(texts)


async def test_a_hung_inference_is_bounded_routed_around_and_dead_lettered(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(
        kafka_bootstrap, worker__batch_timeout_s=1.0, worker__max_batch_attempts=2
    )
    register_doubles()
    models = {"m": {"kind": "echo", "size": "small", "version": "t1", "backends": ["cpu"]}}
    registry = registry_from_dict({"models": models}, default_model="m", source="test")

    def routed(item_id: str, text: str) -> tuple[bytes, bytes, list]:
        env = RoutingEnvelope(model_id="m", target="cpu", chain=[], first_seen_ms=1)
        doc = RoutedItem(id=item_id, text=text, routing=env)
        return item_id.encode(), doc.model_dump_json().encode(), []

    detector = HangsOnMarker(registry.models["m"].spec())
    async with running(
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": detector}, stop=stop
        )
    ):
        await wait_live(settings, "cpu", "m")
        await produce_raw(
            settings, [routed("stuck", "HANG here")], topic=settings.topics.backend_cpu
        )
        await wait_not_live(settings, "cpu", "m", timeout=20)  # routed around meanwhile
        results = await collect(settings, verdicts=0, dead=1, timeout=30)
        # The inference thread is free again (a thread cannot be killed; what is bounded is
        # how long the stage waits for it).
        async with asyncio.timeout(10):
            while detector.hanging:
                await asyncio.sleep(0.05)
        await produce_raw(
            settings, [routed("fine", "an ordinary text")], topic=settings.topics.backend_cpu
        )
        await wait_live(settings, "cpu", "m", timeout=20)  # healthy again
        results = await collect(settings, verdicts=1, dead=1, timeout=30)
    [letter] = results.dead
    assert letter.key == "stuck" and letter.headers["dlq.reason"] == "model_error"
    assert letter.headers["dlq.stage"] == "cpu"
    assert "batch ran past 1s" in letter.headers["dlq.error.message"]
    assert results.verdict_ids() == {"fine"}
