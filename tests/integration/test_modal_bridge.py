"""The Modal bridge when Modal hangs or refuses us, on the real broker: every item still gets
a verdict from the next backend, within a bound, and the router stops sending to Modal.

The bridge here is the real service (``serve_worker(settings, "modal", ...)`` with
ModalDetectors, as ``deepfake-stream modal-bridge`` runs it); only the remote call is
injected: one that never answers, or a lookup that fails with Modal's own AuthError.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.core.kafka import make_producer
from deepfake_stream.core.liveness import LivenessView, now_ms
from deepfake_stream.core.topics import ensure_topics
from deepfake_stream.models.modal_detector import ModalDetector
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import RoutedItem, RoutingEnvelope, Verdict
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, register_doubles
from tests.integration.harness import collect, publish, running, wait_live, wait_not_live
from tests.modal_fakes import auth_error, connect_to, failing_lookup, hang

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0
# Broker round trips on top of the Modal timeout: router hop, bridge hop, hand-on to cpu,
# cpu scoring, verdict, with micro-batch waits, consumer fetch waits (<= 0.5 s each) and
# group joins already done. Measured well under 2 s here; 5 s leaves room for a slow CI.
SLACK_S = 5.0


def _registry():  # type: ignore[no-untyped-def]
    register_doubles()
    doc = {
        "models": {
            "m": {"kind": "echo", "size": "large", "version": "t1", "backends": ["modal", "cpu"]}
        }
    }
    return registry_from_dict(doc, default_model="m", source="test")


def _settings(kafka_bootstrap: str):  # type: ignore[no-untyped-def]
    return unique_settings(
        kafka_bootstrap,
        modal__timeout_s=TIMEOUT_S,
        modal__breaker_failures=2,  # the warm-up batch and the measured one open it
        modal__breaker_cooldown_s=300,
    )


async def _wait_not_live(settings, backend: str, model_id: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds until m is seen dropped, by the router's own view as well as a fresh one."""
    view = LivenessView(settings)
    await view.start()
    started = time.monotonic()
    try:
        async with asyncio.timeout(15):
            # A fresh view knows nobody: first see the bridge alive, then see it drop m.
            while backend not in view.live_backends():
                await view.wait_changed(0.2)
            while view.alive(backend, model_id):
                await view.wait_changed(0.2)
    finally:
        await view.stop()
    # The router reads heartbeats on its own schedule: an item published before its view
    # drops m would (correctly) go to Modal and be handed on by the open circuit.
    await wait_not_live(settings, backend, model_id, timeout=15)
    return time.monotonic() - started


async def test_hanging_modal_falls_back_to_cpu_within_the_timeout(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    registry = _registry()
    spec = registry.models["m"].spec()
    bridge = ModalDetector(
        registry.models["m"].spec("remote"), settings.modal, connect=connect_to(hang)
    )
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "modal", registry=registry, detectors={"m": bridge}, stop=stop
        ),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": EchoDetector(spec)}, stop=stop
        ),
    ):
        await wait_live(settings, "modal", "m")
        await wait_live(settings, "cpu", "m")
        # Warm-up: a first item proves every consumer group has its partitions (joining
        # takes seconds on a fresh group); it costs the breaker its first failure.
        await publish(settings, [{"id": "warm", "text": "warm up"}])
        warm = (await collect(settings, verdicts=1, timeout=60)).by_id()["warm"]
        assert warm["backend"] == "cpu" and warm["fallback_from"] == ["modal"]
        assert bridge.breaker.state == "closed" and bridge.ready

        ids = [f"h-{i}" for i in range(20)]
        started = time.monotonic()
        await publish(settings, [{"id": i, "text": f"text {i}"} for i in ids])
        results = await collect(settings, verdicts=1 + len(ids), timeout=60)
        elapsed = time.monotonic() - started

        # The circuit is open: the bridge stops advertising m, the router skips Modal.
        gone = await _wait_not_live(settings, "modal", "m")
        later = [f"l-{i}" for i in range(10)]
        started2 = time.monotonic()
        await publish(settings, [{"id": i, "text": f"text {i}"} for i in later])
        results2 = await collect(settings, verdicts=1 + len(ids) + len(later), timeout=60)
        elapsed2 = time.monotonic() - started2

    print(
        f"\nModal hanging (timeout {TIMEOUT_S:g}s): 20 items published -> last verdict in "
        f"{elapsed:.2f}s; m no longer advertised on modal {gone:.2f}s after that; with the "
        f"circuit open, 10 more items -> last verdict in {elapsed2:.2f}s"
    )
    by_id = {k: v for k, v in results.by_id().items() if k != "warm"}
    assert set(by_id) == set(ids)
    for v in by_id.values():
        Verdict.model_validate(v)
        assert v["backend"] == "cpu"
        assert v["fallback_from"] in (["modal"], [])
    assert any(v["fallback_from"] == ["modal"] for v in by_id.values()), "Modal was tried"
    assert elapsed < TIMEOUT_S + SLACK_S
    assert bridge.breaker.state == "open" and not bridge.ready
    late = {k: v for k, v in results2.by_id().items() if k in later}
    assert set(late) == set(later)
    assert all(v["backend"] == "cpu" and v["fallback_from"] == [] for v in late.values())
    assert elapsed2 < SLACK_S  # no Modal timeout is waited for any more


async def test_unauthenticated_modal_is_skipped_and_its_topic_drained(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    registry = _registry()
    spec = registry.models["m"].spec()
    bridge = ModalDetector(
        registry.models["m"].spec("remote"), settings.modal, connect=failing_lookup(auth_error())
    )
    await ensure_topics(settings)
    # Items routed to Modal before the bridge (re)started: already on its topic.
    stranded = [f"s-{i}" for i in range(10)]
    producer = make_producer(settings, role="test")
    await producer.start()
    try:
        for i in stranded:
            envelope = RoutingEnvelope(
                model_id="m", target="modal", chain=["cpu"], first_seen_ms=now_ms()
            )
            item = RoutedItem(id=i, text=f"text {i}", routing=envelope)
            await producer.send_and_wait(
                settings.topics.backend_modal, item.model_dump_json().encode(), key=i.encode()
            )
    finally:
        await producer.stop()
    started = time.monotonic()
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "modal", registry=registry, detectors={"m": bridge}, stop=stop
        ),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": EchoDetector(spec)}, stop=stop
        ),
    ):
        drained = await collect(settings, verdicts=len(stranded), timeout=60)
        drain_s = time.monotonic() - started
        await wait_live(settings, "modal")  # the bridge runs and announces itself...
        assert not bridge.ready  # ...advertising no model
        fresh = [f"n-{i}" for i in range(10)]
        started = time.monotonic()
        await publish(settings, [{"id": i, "text": f"text {i}"} for i in fresh])
        results = await collect(settings, verdicts=len(stranded) + len(fresh), timeout=60)
        fresh_s = time.monotonic() - started

    print(
        f"\nModal unauthenticated: 10 stranded items drained via cpu {drain_s:.2f}s after the "
        f"services started (consumer-group join included); 10 new items -> last verdict in "
        f"{fresh_s:.2f}s"
    )
    by_id = results.by_id()
    assert set(drained.by_id()) == set(stranded)
    assert set(by_id) == {*stranded, *fresh}
    for i in stranded:  # handed on at once by the worker's fallback
        assert by_id[i]["backend"] == "cpu" and by_id[i]["fallback_from"] == ["modal"]
        assert by_id[i]["attempts"] == 2
    for i in fresh:  # never sent to Modal: nobody advertises m there
        assert by_id[i]["backend"] == "cpu" and by_id[i]["fallback_from"] == []
    # Start-up is dominated by the consumer-group join (about 5 s on Tansu); no Modal
    # timeout is ever waited for, so new items take only broker round trips.
    assert drain_s < 15
    assert fresh_s < SLACK_S
