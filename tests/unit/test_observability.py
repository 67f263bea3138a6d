"""Metrics and spans of one Worker.handle call (detector doubles), the stage's batch metrics,
and the /metrics endpoint."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from deepfake_stream.consumers.worker import Worker
from deepfake_stream.core.liveness import Heartbeat, LivenessView, now_ms
from deepfake_stream.core.metrics import CACHE_HITS, metrics_server, observe_batch, watch_liveness
from deepfake_stream.core.settings import load_settings
from deepfake_stream.core.stage import Outgoing
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.schemas import RoutedItem, RoutingEnvelope
from tests.doubles import EchoDetector, FailingDetector
from tests.otel_memory import memory_exporter, spans_of_trace, traceparent_ids

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


class Live:
    def __init__(self, *live: str) -> None:
        self.live = set(live)

    def first_alive(self, backends: Any, model_id: str) -> str | None:
        return next((b for b in backends if b in self.live), None)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make(detector_cls: type[EchoDetector], backend: str = "gpu") -> tuple[Worker, Any]:
    registry = registry_from_dict(
        {"models": {"obs-m": {"kind": "echo", "size": "small", "version": "3"}}},
        default_model="obs-m",
        source="test",
    )
    detector = detector_cls(registry.models["obs-m"].spec())
    detector.ready = True
    worker = Worker(
        load_settings(),
        registry,
        backend=backend,
        detectors={"obs-m": detector},
        liveness=Live("cpu"),  # type: ignore[arg-type]
        executor=ThreadPoolExecutor(max_workers=1),
    )
    return worker, detector


def records(n: int, *, traceparent: str = TRACEPARENT, backend: str = "gpu") -> list[Any]:
    out = []
    for i in range(n):
        item = RoutedItem(
            id=f"obs-{i}",
            text=f"some text {i}",
            routing=RoutingEnvelope(
                model_id="obs-m",
                target=backend,  # type: ignore[arg-type]
                chain=["cpu"],
                first_seen_ms=now_ms() - 40,
                trace={"traceparent": traceparent},
            ),
        )
        raw = item.model_dump_json().encode()
        out.append(
            ConsumerRecord(
                f"detect.backend.{backend}",
                0,
                i,
                0,
                0,
                item.id.encode(),
                raw,
                None,
                1,
                len(raw),
                [("traceparent", traceparent.encode())],
            )
        )
    return out


async def test_worker_handle_moves_the_scoring_metrics() -> None:
    worker, _ = make(EchoDetector)
    before = {
        "verdicts": sum(
            value("deepfake_verdicts_total", model="obs-m", backend="gpu", label=label)
            for label in ("ai", "human")
        ),
        "inference": value("deepfake_inference_seconds_count", model="obs-m", backend="gpu"),
        "batch_sum": value("deepfake_batch_size_sum", backend="gpu", model="obs-m"),
        "e2e": value("deepfake_end_to_end_latency_seconds_count", model="obs-m", backend="gpu"),
        "e2e_sum": value("deepfake_end_to_end_latency_seconds_sum", model="obs-m", backend="gpu"),
    }
    result = await worker.handle(records(5))
    assert len(result.out) == 5
    verdicts = sum(
        value("deepfake_verdicts_total", model="obs-m", backend="gpu", label=label)
        for label in ("ai", "human")
    )
    assert verdicts - before["verdicts"] == 5
    assert value("deepfake_inference_seconds_count", model="obs-m", backend="gpu") == (
        before["inference"] + 1
    )
    assert value("deepfake_batch_size_sum", backend="gpu", model="obs-m") == before["batch_sum"] + 5
    assert (
        value("deepfake_end_to_end_latency_seconds_count", model="obs-m", backend="gpu")
        == before["e2e"] + 5
    )
    # first seen 40 ms ago: each latency is at least that
    added = (
        value("deepfake_end_to_end_latency_seconds_sum", model="obs-m", backend="gpu")
        - before["e2e_sum"]
    )
    assert added >= 5 * 0.04


async def test_fallback_is_counted_from_and_to() -> None:
    worker, _ = make(FailingDetector)
    before = value("deepfake_fallbacks_total", from_backend="gpu", to_backend="cpu")
    result = await worker.handle(records(3))
    assert {o.topic for o in result.out} == {worker.settings.topics.backend_cpu}
    assert value("deepfake_fallbacks_total", from_backend="gpu", to_backend="cpu") == before + 3


async def test_item_spans_continue_the_trace_and_the_batch_span_links_them() -> None:
    memory_exporter()
    trace_id = int("ab" * 16, 16)
    traceparent = f"00-{'ab' * 16}-{PARENT_SPAN}-01"
    worker, _ = make(EchoDetector)
    result = await worker.handle(records(3, traceparent=traceparent))
    items = [s for s in spans_of_trace(trace_id) if s.name == "score gpu"]
    assert len(items) == 3
    for span in items:
        assert span.kind == SpanKind.CONSUMER
        assert span.parent is not None and span.parent.span_id == int(PARENT_SPAN, 16)
        assert span.attributes["deepfake.outcome"] == "verdict"
        assert span.attributes["messaging.destination.name"] == "detect.backend.gpu"
    # The verdict carries its item span's context, not the one it received.
    carried = {traceparent_ids(dict(o.headers)["traceparent"].decode()) for o in result.out}
    assert carried == {(trace_id, s.context.span_id) for s in items}
    # One batch span, in a trace of its own, linked to the three item spans.
    batch = [
        s
        for s in memory_exporter().get_finished_spans()
        if s.name == "infer obs-m"
        and {link.context.span_id for link in s.links} == {s2.context.span_id for s2 in items}
    ]
    assert len(batch) == 1
    assert batch[0].context.trace_id != trace_id
    assert batch[0].attributes["deepfake.batch_size"] == 3


async def test_dead_letter_span_is_an_error_in_the_item_trace() -> None:
    memory_exporter()
    trace_id = int("cd" * 16, 16)
    traceparent = f"00-{'cd' * 16}-{PARENT_SPAN}-01"
    worker, _ = make(FailingDetector, backend="cpu")
    worker.liveness = Live()  # type: ignore[assignment]  # nowhere left to fall back to
    result = await worker.handle(records(1, traceparent=traceparent, backend="cpu"))
    [letter] = result.out
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["dlq.reason"] == "all_backends_failed"
    [span] = spans_of_trace(trace_id)
    assert traceparent_ids(headers["traceparent"]) == (trace_id, span.context.span_id)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["deepfake.dlq.reason"] == "all_backends_failed"


class FakeConsumer:
    def __init__(self, highwater: dict[TopicPartition, int]) -> None:
        self._hw = highwater

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._hw.get(tp)


def test_observe_batch_counts_in_out_dead_letters_and_lag() -> None:
    topic = "obs.in"
    recs = [ConsumerRecord(topic, 1, o, 0, 0, None, b"x", None, 0, 1, []) for o in (10, 11, 12)]
    hold = {TopicPartition(topic, 1): 12}  # offset 12 held: not handled yet
    out = [
        Outgoing(topic="obs.cpu", value=b"a"),
        Outgoing(
            topic="obs.dlq",
            value=b"b",
            headers=[("dlq.reason", b"too_large"), ("dlq.stage", b"router")],
        ),
    ]
    before_in = value("deepfake_items_in_total", stage="obs-router", topic=topic)
    before_dead = value("deepfake_dead_letters_total", reason="too_large", stage="router")
    consumer = FakeConsumer({TopicPartition(topic, 1): 20})
    observe_batch("obs-router", consumer, recs, hold, out)  # type: ignore[arg-type]
    assert value("deepfake_items_in_total", stage="obs-router", topic=topic) == before_in + 2
    assert value("deepfake_items_out_total", stage="obs-router", topic="obs.cpu") >= 1
    assert value("deepfake_dead_letters_total", reason="too_large", stage="router") == (
        before_dead + 1
    )
    # high watermark 20, next offset to handle 12: 8 behind
    assert value("deepfake_consumer_lag", stage="obs-router", topic=topic, partition="1") == 8


def test_metrics_endpoint_serves_prometheus_text_with_liveness() -> None:
    port = free_port()
    settings = load_settings({("metrics", "port"): port})
    view = LivenessView(settings)
    view.observe(
        Heartbeat(worker_id="w1", backend="gpu", models=("a", "b"), ts_ms=now_ms(), ttl_ms=60_000)
    )
    watch_liveness(view)
    CACHE_HITS.labels(model="obs-m").inc()
    with metrics_server(settings, "test") as served:
        assert served == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = resp.read().decode()
    assert 'deepfake_backend_live{backend="gpu"} 1.0' in text
    assert 'deepfake_backend_models{backend="gpu"} 2.0' in text
    assert 'deepfake_cache_hits_total{model="obs-m"}' in text
    for name in ("deepfake_items_in_total", "deepfake_inference_seconds", "deepfake_batch_size"):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_metrics_port_zero_is_off_and_a_busy_port_is_not_fatal() -> None:
    with metrics_server(load_settings(), "test") as served:
        assert served is None
    port = free_port()
    settings = load_settings({("metrics", "port"): port})
    with metrics_server(settings, "first") as first, metrics_server(settings, "second") as second:
        assert first == port and second is None


def test_up_gives_each_child_its_own_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepfake_stream.commands import up

    monkeypatch.setattr(up, "_gpu_present", lambda: False)
    monkeypatch.setattr(up, "_modal_configured", lambda: False)
    settings = load_settings({("worker", "cpu_workers"): 2, ("metrics", "port"): 9301})
    ports = {}
    for child in up._children(settings):
        args = child.args
        ports[child.role] = int(args[args.index("--metrics-port") + 1])
    assert ports["router"] == 9301
    assert {ports["cpu-worker-1"], ports["cpu-worker-2"]} == {9302, 9303}
    assert ports.get("shim", 0) == 0  # the shim serves /metrics on its HTTP port
    off = up._children(load_settings({("worker", "cpu_workers"): 1}))
    assert all("--metrics-port" not in c.args for c in off if c.role != "shim")
