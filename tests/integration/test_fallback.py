"""Fallback, culprit isolation and back-pressure, on the real broker with detector doubles."""

from __future__ import annotations

import time

import pytest

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.routing.service import serve_router
from deepfake_stream.schemas import Verdict
from tests.conftest import unique_settings
from tests.doubles import register_doubles
from tests.integration.harness import collect, publish, running, wait_live

pytestmark = pytest.mark.integration


def _registry(kinds: dict[str, str], chain: list[str]):  # type: ignore[no-untyped-def]
    register_doubles()
    models = {
        model_id: {"kind": kind, "size": "small", "version": "t1", "backends": chain}
        for model_id, kind in kinds.items()
    }
    return registry_from_dict({"models": models}, default_model=next(iter(kinds)), source="test")


def _worker(settings, backend, registry, detectors):  # type: ignore[no-untyped-def]
    return lambda stop: serve_worker(
        settings, backend, registry=registry, detectors=detectors, stop=stop
    )


async def test_preferred_backend_failing_falls_back_and_says_so(kafka_bootstrap: str) -> None:
    from tests.doubles import EchoDetector, FailingDetector

    settings = unique_settings(kafka_bootstrap, worker__device="cpu")
    registry = _registry({"m": "echo"}, ["gpu", "cpu"])
    spec = registry.models["m"].spec()
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        _worker(settings, "gpu", registry, {"m": FailingDetector(spec)}),
        _worker(settings, "cpu", registry, {"m": EchoDetector(spec)}),
    ):
        await wait_live(settings, "gpu", "m")
        await wait_live(settings, "cpu", "m")
        await publish(settings, [{"id": f"f-{i}", "text": f"text {i}"} for i in range(20)])
        results = await collect(settings, verdicts=20)
    by_id = results.by_id()
    assert set(by_id) == {f"f-{i}" for i in range(20)}
    for v in by_id.values():
        Verdict.model_validate(v)
        assert v["backend"] == "cpu"
        assert v["fallback_from"] == ["gpu"]
        assert v["attempts"] == 2


async def test_every_backend_failing_dead_letters_all_backends_failed(kafka_bootstrap: str) -> None:
    from tests.doubles import FailingDetector

    settings = unique_settings(kafka_bootstrap, worker__device="cpu")
    registry = _registry({"m": "failing"}, ["gpu", "cpu"])
    spec = registry.models["m"].spec()
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        _worker(settings, "gpu", registry, {"m": FailingDetector(spec)}),
        _worker(settings, "cpu", registry, {"m": FailingDetector(spec)}),
    ):
        await wait_live(settings, "gpu", "m")
        await wait_live(settings, "cpu", "m")
        await publish(settings, [{"id": f"x-{i}", "text": f"text {i}"} for i in range(5)])
        results = await collect(settings, verdicts=0, dead=5)
    assert not results.verdicts
    assert {a.key for a in results.dead} == {f"x-{i}" for i in range(5)}
    for a in results.dead:
        h = a.headers
        assert h["dlq.reason"] == "all_backends_failed"
        assert h["dlq.stage"] == "cpu"
        assert h["dlq.attempts"] == "2"
        assert h["dlq.error.class"] == "ModelError"
        assert h["dlq.original.topic"] == settings.topics.backend_cpu
        assert a.json()["routing"]["fallback_from"] == ["gpu"]  # original bytes of that stage


async def test_poisoned_text_only_that_item_moves_on(kafka_bootstrap: str) -> None:
    from tests.doubles import EchoDetector, PoisonDetector

    settings = unique_settings(
        kafka_bootstrap, worker__device="cpu", worker__max_batch_size=32, worker__max_wait_ms=300
    )
    registry = _registry({"m": "poison"}, ["cpu", "gpu"])
    spec = registry.models["m"].spec()
    cpu = PoisonDetector(spec)
    docs = [
        {"id": f"p-{i}", "text": "POISON here" if i == 7 else f"fine text {i}"} for i in range(32)
    ]
    # Publish before the workers start so the whole set lands in one micro-batch.
    await publish(settings, docs)
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        _worker(settings, "gpu", registry, {"m": EchoDetector(spec)}),
        _worker(settings, "cpu", registry, {"m": cpu}),
    ):
        results = await collect(settings, verdicts=32)
    by_id = results.by_id()
    assert set(by_id) == {d["id"] for d in docs}
    assert by_id["p-7"]["backend"] == "gpu" and by_id["p-7"]["fallback_from"] == ["cpu"]
    others = [v for k, v in by_id.items() if k != "p-7"]
    assert all(v["backend"] == "cpu" and v["fallback_from"] == [] for v in others)
    assert any(n < -1 for n in cpu.batches), "the poisoned batch was a real multi-item batch"
    assert max(v["batch_size"] for v in others) > 1


async def test_prefer_backend_without_live_worker_falls_back(kafka_bootstrap: str) -> None:
    from tests.doubles import EchoDetector

    settings = unique_settings(kafka_bootstrap)
    registry = _registry({"m": "echo"}, ["gpu", "cpu"])
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        _worker(settings, "cpu", registry, {"m": EchoDetector(registry.models["m"].spec())}),
    ):
        await wait_live(settings, "cpu", "m")
        await publish(
            settings, [{"id": f"g-{i}", "text": "t", "prefer_backend": "gpu"} for i in range(10)]
        )
        results = await collect(settings, verdicts=10)
    assert {v["backend"] for v in results.by_id().values()} == {"cpu"}
    assert all(v["fallback_from"] == [] for v in results.by_id().values())


async def test_items_wait_for_a_worker_instead_of_stranding(kafka_bootstrap: str) -> None:
    """No live backend at routing time: the router holds the items (back-pressure) and
    routes them as soon as a worker announces itself."""
    from tests.doubles import EchoDetector

    settings = unique_settings(kafka_bootstrap)
    registry = _registry({"m": "echo"}, ["cpu"])
    await publish(settings, [{"id": f"w-{i}", "text": "t"} for i in range(5)])
    async with running(lambda stop: serve_router(settings, registry=registry, stop=stop)):
        time.sleep(0)
        async with running(
            _worker(settings, "cpu", registry, {"m": EchoDetector(registry.models["m"].spec())})
        ):
            results = await collect(settings, verdicts=5)
    assert results.verdict_ids() == {f"w-{i}" for i in range(5)}


async def test_deadline_passed_is_dead_lettered(kafka_bootstrap: str) -> None:
    from tests.doubles import EchoDetector

    settings = unique_settings(kafka_bootstrap)
    registry = _registry({"m": "echo"}, ["cpu"])
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        _worker(settings, "cpu", registry, {"m": EchoDetector(registry.models["m"].spec())}),
    ):
        await wait_live(settings, "cpu", "m")
        await publish(
            settings,
            [
                {"id": "late", "text": "t", "deadline_ms": 1},
                {"id": "ok", "text": "t", "deadline_ms": 2**53},
            ],
        )
        results = await collect(settings, verdicts=1, dead=1)
    assert results.verdict_ids() == {"ok"}
    assert results.dead[0].headers["dlq.reason"] == "deadline_exceeded"
    assert results.dead[0].key == "late"
