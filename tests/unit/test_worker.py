"""Worker.handle: verdicts, fallback hand-offs and dead letters, with detector doubles."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from deepfake_stream.consumers.worker import Worker
from deepfake_stream.core.errors import InvalidInput
from deepfake_stream.core.headers import parse_headers
from deepfake_stream.core.liveness import now_ms
from deepfake_stream.core.settings import Settings, load_settings
from deepfake_stream.core.stage import BatchResult, Outgoing
from deepfake_stream.models.base import Score
from deepfake_stream.models.registry import Registry, registry_from_dict
from deepfake_stream.schemas import RoutedItem, RoutingEnvelope, Verdict
from tests.doubles import EchoDetector, FailingDetector, PoisonDetector

TRACEPARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class FakeLiveness:
    """Just what the worker asks: the first live backend of a chain for a model."""

    def __init__(self, *live: str) -> None:
        self.live = set(live)
        self.asked: list[tuple[list[str], str]] = []

    def first_alive(self, backends: Iterable[str], model_id: str) -> str | None:
        backends = list(backends)
        self.asked.append((backends, model_id))
        return next((b for b in backends if b in self.live), None)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def make_registry(max_batch_size: int | None = None) -> Registry:
    models = {
        "m": {
            "kind": "echo",
            "size": "large",
            "version": "7",
            "threshold": 0.5,
            "max_batch_size": max_batch_size,
        },
        "other": {"kind": "echo", "size": "small", "version": "1"},
    }
    return registry_from_dict({"models": models}, default_model="m", source="test")


def make_worker(
    settings: Settings,
    executor: ThreadPoolExecutor,
    detector: Any,
    *,
    backend: str = "gpu",
    live: Sequence[str] = ("cpu",),
    max_batch_size: int | None = None,
) -> tuple[Worker, FakeLiveness]:
    registry = make_registry(max_batch_size)
    liveness = FakeLiveness(*live)
    worker = Worker(
        settings,
        registry,
        backend=backend,
        detectors={"m": detector},
        liveness=liveness,
        executor=executor,
    )  # type: ignore[arg-type]
    return worker, liveness


def echo(cls: type[EchoDetector] = EchoDetector) -> EchoDetector:
    return cls(make_registry().models["m"].spec())


def routed(
    item_id: str,
    *,
    text: str | None = None,
    model_id: str = "m",
    target: str = "gpu",
    chain: Sequence[str] = ("cpu",),
    attempts: int = 1,
    fallback_from: Sequence[str] = (),
    first_seen_ms: int | None = None,
    **item: Any,
) -> RoutedItem:
    return RoutedItem(
        id=item_id,
        text=text if text is not None else f"text of {item_id}",
        **item,
        routing=RoutingEnvelope(
            model_id=model_id,
            target=target,  # type: ignore[arg-type]
            chain=list(chain),  # type: ignore[arg-type]
            attempts=attempts,
            fallback_from=list(fallback_from),  # type: ignore[arg-type]
            first_seen_ms=first_seen_ms if first_seen_ms is not None else now_ms(),
            trace={"traceparent": TRACEPARENT},
        ),
    )


def record(value: bytes, offset: int = 0, topic: str = "detect.backend.gpu") -> ConsumerRecord:
    headers = [("traceparent", TRACEPARENT.encode())]
    return ConsumerRecord(topic, 2, offset, 0, 0, b"k", value, None, 1, len(value), headers)


def records(*items: RoutedItem) -> list[ConsumerRecord]:
    return [record(i.model_dump_json().encode(), offset=n) for n, i in enumerate(items)]


def verdicts(settings: Settings, result: BatchResult) -> list[tuple[Outgoing, Verdict]]:
    return [
        (o, Verdict.model_validate_json(o.value))
        for o in result.out
        if o.topic == settings.topics.verdicts
    ]


def dead(settings: Settings, result: BatchResult) -> list[tuple[Outgoing, dict[str, str]]]:
    return [(o, parse_headers(o.headers)) for o in result.out if o.topic == settings.topics.dlq]


def same_trace(headers: Sequence[tuple[str, bytes]]) -> bool:
    """The carried traceparent is in the item's trace (its span id is the worker's span when
    an OpenTelemetry SDK is installed in this process, the item's own when not)."""
    carried = dict(headers)["traceparent"].decode()
    return carried.split("-")[1] == TRACEPARENT.split("-")[1]


def expected_score(text: str) -> float:
    return hashlib.sha256(text.encode()).digest()[0] / 255


async def test_verdict_fields(settings: Settings, executor: ThreadPoolExecutor) -> None:
    detector = echo()
    worker, _ = make_worker(settings, executor, detector)
    items = [
        routed(
            f"id-{i}",
            tenant=f"tenant-{i}",
            metadata={"i": i, "tags": ["x"]},
            first_seen_ms=now_ms() - 50,
            attempts=2,
            fallback_from=["modal"],
        )
        for i in range(3)
    ]
    result = await worker.handle(records(*items))
    out = verdicts(settings, result)
    assert [v.id for _, v in out] == ["id-0", "id-1", "id-2"]
    assert detector.batches == [3]
    for (o, v), item in zip(out, items, strict=True):
        assert o.key == item.id.encode()
        assert same_trace(o.headers)  # the worker's span continues the item's trace
        assert v.model_id == "m"
        assert v.model_version == detector.version
        assert v.score == pytest.approx(expected_score(item.text))
        assert v.threshold == 0.5
        assert v.label == ("ai" if v.score >= 0.5 else "human")
        assert v.backend == "gpu"
        assert v.fallback_from == ["modal"]
        assert v.attempts == 2
        assert v.batch_size == 3
        assert v.latency_ms >= 50
        assert ISO_MS_Z.match(v.scored_at), v.scored_at
        assert v.tenant == item.tenant
        assert v.metadata == item.metadata
        assert v.replay is False
    assert worker.scored == 3 and worker.dead == 0 and worker.handed_on == 0


async def test_latency_is_never_negative(settings: Settings, executor: ThreadPoolExecutor) -> None:
    worker, _ = make_worker(settings, executor, echo())
    result = await worker.handle(records(routed("future", first_seen_ms=now_ms() + 60_000)))
    [(_, v)] = verdicts(settings, result)
    assert v.latency_ms == 0.0


async def test_model_max_batch_size_caps_the_batch(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    detector = echo()
    worker, _ = make_worker(settings, executor, detector, max_batch_size=2)
    result = await worker.handle(records(*(routed(f"b{i}") for i in range(5))))
    assert detector.batches == [2, 2, 1]
    assert [v.batch_size for _, v in verdicts(settings, result)] == [2, 2, 2, 2, 1]


@pytest.mark.parametrize(
    "value",
    [
        b"{not json",
        b"",
        json.dumps({"id": "x", "text": "no routing"}).encode(),
        json.dumps({"id": 5, "text": "t", "routing": {}}).encode(),
    ],
    ids=["garbage", "empty", "no-routing", "bad-envelope"],
)
async def test_invalid_routed_json_is_dead_lettered(
    settings: Settings, executor: ThreadPoolExecutor, value: bytes
) -> None:
    detector = echo()
    worker, _ = make_worker(settings, executor, detector, backend="cpu")
    result = await worker.handle([record(value, offset=17, topic="detect.backend.cpu")])
    [(o, h)] = dead(settings, result)
    assert o.value == value  # original bytes, unchanged
    assert h["dlq.reason"] == "invalid_schema"
    assert h["dlq.stage"] == "cpu"
    assert h["dlq.attempts"] == "0"
    assert h["dlq.original.topic"] == "detect.backend.cpu"
    assert h["dlq.original.partition"] == "2"
    assert h["dlq.original.offset"] == "17"
    assert same_trace([("traceparent", h["traceparent"].encode())])
    assert detector.batches == []


async def test_bad_message_does_not_take_the_batch_down(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    worker, _ = make_worker(settings, executor, echo())
    batch = [*records(routed("ok-1")), record(b"junk", offset=1), *records(routed("ok-2"))]
    result = await worker.handle(batch)
    assert [v.id for _, v in verdicts(settings, result)] == ["ok-1", "ok-2"]
    assert len(dead(settings, result)) == 1


async def test_deadline_passed_is_dead_lettered(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    detector = echo()
    worker, _ = make_worker(settings, executor, detector)
    late = routed("late", deadline_ms=now_ms() - 1, attempts=2)
    in_time = routed("in-time", deadline_ms=now_ms() + 60_000)
    result = await worker.handle(records(late, in_time))
    [(o, h)] = dead(settings, result)
    assert o.value == late.model_dump_json().encode()
    assert h["dlq.reason"] == "deadline_exceeded"
    assert h["dlq.stage"] == "gpu"
    assert h["dlq.attempts"] == "2"
    assert [v.id for _, v in verdicts(settings, result)] == ["in-time"]
    assert detector.batches == [1]


async def test_model_not_loaded_is_handed_to_next_live_backend(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    worker, liveness = make_worker(settings, executor, echo(), live=("cpu",))
    item = routed("elsewhere", model_id="other", chain=["modal", "cpu"], tenant="t")
    result = await worker.handle(records(item))
    [o] = result.out
    assert o.topic == settings.topics.backend_cpu
    assert o.key == b"elsewhere"
    assert same_trace(o.headers)
    handed = RoutedItem.model_validate_json(o.value)
    assert handed.routing.target == "cpu"
    assert handed.routing.chain == []  # the dead modal backend is not put back
    assert handed.routing.attempts == 2
    assert handed.routing.fallback_from == ["gpu"]
    assert handed.routing.model_id == "other"
    assert handed.routing.first_seen_ms == item.routing.first_seen_ms
    assert handed.text == item.text and handed.tenant == "t"
    assert liveness.asked == [(["modal", "cpu"], "other")]
    assert worker.handed_on == 1


async def test_model_failure_hands_on_keeping_later_fallbacks(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    worker, _ = make_worker(
        settings, executor, echo(FailingDetector), backend="modal", live=("gpu", "cpu")
    )
    item = routed("f", target="modal", chain=["gpu", "cpu"])
    [o] = (await worker.handle(records(item))).out
    handed = RoutedItem.model_validate_json(o.value)
    assert o.topic == settings.topics.backend_gpu
    assert (handed.routing.target, handed.routing.chain) == ("gpu", ["cpu"])
    assert handed.routing.fallback_from == ["modal"]


async def test_non_retriable_error_is_dead_lettered_with_its_reason(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    class TooLongForModel(EchoDetector):
        def predict_batch(self, texts: Sequence[str]) -> list[Score]:
            if any(len(t) > 20 for t in texts):
                raise InvalidInput("too_large", "text exceeds this model's context")
            return super().predict_batch(texts)

    worker, liveness = make_worker(settings, executor, echo(TooLongForModel), live=("cpu",))
    result = await worker.handle(
        records(routed("short"), routed("long", text="x" * 50, attempts=1))
    )
    assert [v.id for _, v in verdicts(settings, result)] == ["short"]
    [(_, h)] = dead(settings, result)
    assert h["dlq.reason"] == "too_large"
    assert h["dlq.stage"] == "gpu"
    assert h["dlq.error.class"] == "InvalidInput"
    assert "context" in h["dlq.error.message"]
    assert h["dlq.attempts"] == "1"
    assert not any(o.topic == settings.topics.backend_cpu for o in result.out)
    assert liveness.asked == []  # poison: no other backend is even considered


async def test_exhausted_chain_is_all_backends_failed(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    worker, _ = make_worker(settings, executor, echo(FailingDetector), backend="cpu", live=())
    item = routed("doomed", target="cpu", chain=[], attempts=3, fallback_from=["modal", "gpu"])
    value = item.model_dump_json().encode()
    result = await worker.handle([record(value, offset=4, topic="detect.backend.cpu")])
    [(o, h)] = dead(settings, result)
    assert o.value == value
    assert o.key == b"k"
    assert h["dlq.reason"] == "all_backends_failed"
    assert h["dlq.stage"] == "cpu"
    assert h["dlq.attempts"] == "3"
    assert h["dlq.error.class"] == "ModelError"
    assert "modal" in h["dlq.error.message"] and "gpu" in h["dlq.error.message"]
    assert h["dlq.original.offset"] == "4"
    assert worker.dead == 1


async def test_chain_with_no_live_backend_is_all_backends_failed(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    worker, _ = make_worker(settings, executor, echo(FailingDetector), live=())
    result = await worker.handle(records(routed("x", chain=["cpu"], attempts=1)))
    [(_, h)] = dead(settings, result)
    assert h["dlq.reason"] == "all_backends_failed"
    assert h["dlq.attempts"] == "1"


async def test_culprit_alone_is_handed_on(settings: Settings, executor: ThreadPoolExecutor) -> None:
    worker, _ = make_worker(settings, executor, echo(PoisonDetector), live=("cpu",))
    items = [routed(f"p{i}", text="POISON" if i == 3 else f"fine {i}") for i in range(6)]
    result = await worker.handle(records(*items))
    assert sorted(v.id for _, v in verdicts(settings, result)) == ["p0", "p1", "p2", "p4", "p5"]
    handed = [o for o in result.out if o.topic == settings.topics.backend_cpu]
    assert [RoutedItem.model_validate_json(o.value).id for o in handed] == ["p3"]
    assert worker.scored == 5 and worker.handed_on == 1


async def test_the_modal_bridges_first_batch_carries_the_remote_model_version(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    from deepfake_stream.models.modal_detector import ModalDetector
    from tests.modal_fakes import FakeRemote

    spec = make_registry().models["m"].spec("remote")
    detector = ModalDetector(spec, settings.modal, connect=FakeRemote().connect())
    await detector.load()
    try:
        worker, _ = make_worker(settings, executor, detector, backend="modal")
        assert detector.version == spec.version  # nothing asked of Modal yet
        result = await worker.handle(records(routed("first", target="modal")))
        [(_, verdict)] = verdicts(settings, result)
        assert verdict.model_version == detector.version != spec.version
    finally:
        await detector.unload()


class HangsUntilReleased(EchoDetector):
    def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
        super().__init__(spec)
        import threading

        self.release = threading.Event()

    def predict_batch(self, texts: Sequence[str]) -> list[Score]:
        self.batches.append(len(texts))
        self.release.wait(30)
        return [Score(score=0.5) for _ in texts]


async def test_a_hung_inference_hands_on_and_unadvertises_until_it_returns() -> None:
    import asyncio

    from deepfake_stream.consumers.inference_thread import InferenceThread

    settings = load_settings({("worker", "batch_timeout_s"): 0.2})
    detector = echo(HangsUntilReleased)
    await detector.load()
    worker, _ = make_worker(settings, InferenceThread("t"), detector, live=("cpu",))  # type: ignore[arg-type]
    changes: list[list[str]] = []
    worker.on_advertised_change = lambda: changes.append(worker.advertised())
    assert worker.advertised() == ["m"]
    first = await worker.handle(records(routed("a"), routed("b")))
    handed = [RoutedItem.model_validate_json(o.value) for o in first.out]
    assert [h.id for h in handed] == ["a", "b"]
    assert all(h.routing.fallback_from == ["gpu"] and h.routing.target == "cpu" for h in handed)
    assert worker.advertised() == [] and changes == [[]]
    # While hung: handed on at once, the detector not called again.
    second = await worker.handle(records(routed("c")))
    assert [o.topic for o in second.out] == [settings.topics.backend_cpu]
    assert detector.batches == [2]
    detector.release.set()
    async with asyncio.timeout(5):
        while worker.advertised() != ["m"]:
            await asyncio.sleep(0.01)
    assert changes == [[], ["m"]]
    # Scoring resumes in the fresh thread (the detector answers at once now).
    third = await worker.handle(records(routed("d")))
    assert [o.topic for o in third.out] == [settings.topics.verdicts]


async def test_torch_threads_are_tuned_per_model_unless_its_registry_entry_sets_them(
    settings: Settings, executor: ThreadPoolExecutor
) -> None:
    worker, _ = make_worker(settings, executor, echo())
    worker.tune_threads = 2  # what serve_worker passes on a 2-core CPU worker with torch
    result = await worker.handle(records(routed("a")))
    assert [v.id for _, v in verdicts(settings, result)] == ["a"]
    tuner = worker.tuners["m"]
    assert list(worker.tuners) == ["m"] and tuner is not None and len(tuner.cost) == 1

    pinned, _ = make_worker(settings, executor, echo())
    pinned.tune_threads = 2
    pinned.registry.models["m"].options["num_threads"] = 1
    result = await pinned.handle(records(routed("b")))
    assert [v.id for _, v in verdicts(settings, result)] == ["b"]
    assert pinned.tuners == {"m": None}  # the registry's num_threads is kept as set
