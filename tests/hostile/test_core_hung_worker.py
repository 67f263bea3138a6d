"""A worker whose inference hangs (real broker, router and two workers in-process; the hang is
a detector double): the batch is cut at WORKER_BATCH_TIMEOUT_S and its items go to the next
backend of their chain with ``fallback_from``, the worker stops advertising the hung model at
once so the router sends new items elsewhere, items still reaching it are handed on without
waiting, and it advertises the model again once the stuck call returns. With no backend
left, the item is dead-lettered ``all_backends_failed``, naming the timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.models.base import Score
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import RoutedItem, RoutingEnvelope
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, register_doubles
from tests.hostile.core_raw import item, produce_raw
from tests.integration.harness import collect, running, wait_live, wait_not_live

pytestmark = pytest.mark.integration


class HangsForGood(EchoDetector):
    """Any batch holding "HANG" blocks its thread until ``release`` is set (a stuck kernel);
    the test releases it only at the end."""

    def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
        super().__init__(spec)
        self.release = threading.Event()
        self.calls = 0

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.calls += 1
        if any("HANG" in t for t in texts):
            self.release.wait(60)  # bounded, should the test fail before releasing it
            return [Score(score=0.5) for _ in texts]  # far too late: handed on long ago
        return super().predict_batch(texts)


def _registry(backends: list[str]):  # type: ignore[no-untyped-def]
    register_doubles()
    models = {"m": {"kind": "echo", "size": "small", "version": "t1", "backends": backends}}
    return registry_from_dict({"models": models}, default_model="m", source="test")


def _routed(item_id: str, text: str, chain: list[str]) -> tuple[bytes, bytes, list]:
    env = RoutingEnvelope(model_id="m", target="cpu", chain=chain, first_seen_ms=1)
    doc = RoutedItem(id=item_id, text=text, routing=env)
    return item_id.encode(), doc.model_dump_json().encode(), []


async def test_a_hung_model_hands_its_items_on_and_is_routed_around(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Heartbeats every 10 s: only an immediate one can make the router see the hang soon.
    settings = unique_settings(
        kafka_bootstrap,
        worker__batch_timeout_s=1.0,
        worker__device="cpu",
        worker__heartbeat_interval_s=10.0,
        worker__heartbeat_ttl_s=30.0,
    )
    registry = _registry(["cpu", "gpu"])
    hanging = HangsForGood(registry.models["m"].spec())
    healthy = EchoDetector(registry.models["m"].spec())
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": hanging}, stop=stop
        ),
        lambda stop: serve_worker(
            settings, "gpu", registry=registry, detectors={"m": healthy}, stop=stop
        ),
    ):
        await wait_live(settings, "cpu", "m")
        await wait_live(settings, "gpu", "m")
        # Routed by the router to cpu, the first backend of m's chain.
        await produce_raw(settings, [item("stuck", "HANG here", model_id="m")])
        await wait_not_live(settings, "cpu", "m", timeout=20)
        hung = next(r for r in caplog.records if "is not advertised until" in r.getMessage())
        unadvertised_s = time.time() - hung.created  # from the timeout to the router's view
        # New items: the router sends them straight to gpu.
        await produce_raw(settings, [item(f"new-{i}", model_id="m") for i in range(5)])
        # Items already on their way to cpu (routed before the hang was known): handed on
        # without waiting for another timeout.
        waiting = time.monotonic()
        await produce_raw(
            settings,
            [_routed(f"queued-{i}", f"queued text {i}", ["gpu"]) for i in range(3)],
            topic=settings.topics.backend_cpu,
        )
        results = await collect(settings, verdicts=9, timeout=30, settle=0.5)
        all_out_s = time.monotonic() - waiting
        assert hanging.calls == 1  # the hung model was not called again
        hanging.release.set()  # the stuck call returns: cpu advertises m again
        await wait_live(settings, "cpu", "m", timeout=20)
    got = results.by_id()
    assert sorted(got) == sorted(
        ["stuck", *(f"new-{i}" for i in range(5)), *(f"queued-{i}" for i in range(3))]
    )
    assert len(results.verdicts) == 9 and results.dead == []
    assert got["stuck"]["backend"] == "gpu" and got["stuck"]["fallback_from"] == ["cpu"]
    assert got["stuck"]["attempts"] == 2
    for i in range(5):
        assert got[f"new-{i}"]["backend"] == "gpu" and got[f"new-{i}"]["fallback_from"] == []
    for i in range(3):
        assert got[f"queued-{i}"]["fallback_from"] == ["cpu"]
    # Promptly: every view stopped counting cpu for m right after the timeout (an immediate
    # heartbeat, not the next one 10 s later, nor the 30 s TTL); nothing else waited for it.
    assert unadvertised_s < 4.0, unadvertised_s
    assert all_out_s < 10.0, all_out_s
    print(
        f"\nhung model unadvertised {unadvertised_s:.2f}s after its timeout; "
        f"8 more items out {all_out_s:.2f}s after they were sent"
    )


async def test_a_hung_item_with_no_backend_left_is_dead_lettered_naming_the_timeout(
    kafka_bootstrap: str,
) -> None:
    settings = unique_settings(kafka_bootstrap, worker__batch_timeout_s=1.0)
    registry = _registry(["cpu"])
    detector = HangsForGood(registry.models["m"].spec())
    async with running(
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": detector}, stop=stop
        )
    ):
        await wait_live(settings, "cpu", "m")
        await produce_raw(
            settings, [_routed("stuck", "HANG here", [])], topic=settings.topics.backend_cpu
        )
        await wait_not_live(settings, "cpu", "m", timeout=10)
        results = await collect(settings, verdicts=0, dead=1, timeout=30)
        detector.release.set()
        await wait_live(settings, "cpu", "m", timeout=20)  # healthy again
        await produce_raw(
            settings, [_routed("fine", "an ordinary text", [])], topic=settings.topics.backend_cpu
        )
        results = await collect(settings, verdicts=1, dead=1, timeout=30)
    [letter] = results.dead
    assert letter.key == "stuck" and letter.headers["dlq.reason"] == "all_backends_failed"
    assert letter.headers["dlq.stage"] == "cpu"
    assert letter.headers["dlq.error.class"] == "InferenceTimedOut"
    assert "ran past 1s (WORKER_BATCH_TIMEOUT_S)" in letter.headers["dlq.error.message"]
    assert results.verdict_ids() == {"fine"}
