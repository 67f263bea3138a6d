"""One item's trace across the real broker, and a running worker's /metrics endpoint.

Router and workers run in-process (harness.running) on the embedded broker with an
in-memory span exporter; the trace context travels only through Kafka headers and the routed
item's envelope, exactly as between processes."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from opentelemetry.trace import SpanKind

from deepfake_stream.consumers.service import serve_worker
from deepfake_stream.embedded_broker import free_port
from deepfake_stream.models.registry import registry_from_dict
from deepfake_stream.producers.client import DetectProducer
from deepfake_stream.routing.service import serve_router
from tests.conftest import unique_settings
from tests.doubles import EchoDetector, FailingDetector, register_doubles
from tests.integration.harness import collect, running, wait_live
from tests.otel_memory import memory_exporter, spans_of_trace, traceparent_ids

pytestmark = pytest.mark.integration


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def _registry(chain: list[str]):  # type: ignore[no-untyped-def]
    register_doubles()
    return registry_from_dict(
        {"models": {"m": {"kind": "echo", "size": "small", "version": "t1", "backends": chain}}},
        default_model="m",
        source="test",
    )


async def _publish_with_trace(settings, item_id: str, traceparent: str) -> None:  # type: ignore[no-untyped-def]
    async with DetectProducer(settings=settings) as producer:
        raw = json.dumps({"id": item_id, "text": "a text to trace"}).encode()
        await producer.send_item(
            producer.validate(raw), headers=[("traceparent", traceparent.encode())]
        )


async def test_one_item_one_trace_across_router_fallback_and_worker(kafka_bootstrap: str) -> None:
    memory_exporter()
    settings = unique_settings(kafka_bootstrap, worker__device="cpu")
    registry = _registry(["gpu", "cpu"])
    spec = registry.models["m"].spec()
    trace_hex, producer_span_hex = "5e" * 16, "7a" * 8
    trace_id, producer_span = int(trace_hex, 16), int(producer_span_hex, 16)
    async with running(
        lambda stop: serve_router(settings, registry=registry, stop=stop),
        lambda stop: serve_worker(
            settings, "gpu", registry=registry, detectors={"m": FailingDetector(spec)}, stop=stop
        ),
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": EchoDetector(spec)}, stop=stop
        ),
    ):
        await wait_live(settings, "gpu", "m")
        await wait_live(settings, "cpu", "m")
        await _publish_with_trace(settings, "traced-1", f"00-{trace_hex}-{producer_span_hex}-01")
        results = await collect(settings, verdicts=1)
    [arrival] = results.verdicts
    assert arrival.json()["fallback_from"] == ["gpu"]

    spans = spans_of_trace(trace_id)
    by_name = {s.name: s for s in spans}
    router = by_name[f"route {settings.topics.input}"]
    gpu, cpu = by_name["score gpu"], by_name["score cpu"]
    assert len(spans) == 3, [s.name for s in spans]
    # producer → router → gpu worker (failed, handed on) → cpu worker → verdict
    assert router.parent.span_id == producer_span
    assert gpu.parent.span_id == router.context.span_id
    assert cpu.parent.span_id == gpu.context.span_id
    assert traceparent_ids(arrival.headers["traceparent"]) == (trace_id, cpu.context.span_id)
    assert router.kind == gpu.kind == cpu.kind == SpanKind.CONSUMER
    assert router.attributes["deepfake.target"] == "gpu"
    assert router.attributes["messaging.kafka.message.key"] == "traced-1"
    assert gpu.attributes["deepfake.outcome"] == "handed_on"
    assert gpu.attributes["deepfake.next_backend"] == "cpu"
    assert cpu.attributes["deepfake.outcome"] == "verdict"
    assert cpu.attributes["deepfake.attempts"] == 2
    # Each worker's inference batch is a span of its own, linked to the item span it scored.
    finished = memory_exporter().get_finished_spans()
    for item_span in (gpu, cpu):
        linked = [
            s
            for s in finished
            if s.name == "infer m"
            and item_span.context.span_id in {link.context.span_id for link in s.links}
        ]
        assert len(linked) == 1
        assert linked[0].context.trace_id != trace_id
        assert linked[0].attributes["deepfake.stage"] == item_span.attributes["deepfake.stage"]


async def test_running_worker_serves_prometheus_metrics(kafka_bootstrap: str) -> None:
    port = free_port()
    settings = unique_settings(kafka_bootstrap, metrics__port=port)
    registry = _registry(["cpu"])
    spec = registry.models["m"].spec()
    async with running(
        lambda stop: serve_worker(
            settings, "cpu", registry=registry, detectors={"m": EchoDetector(spec)}, stop=stop
        ),
        # the router gets metrics off (port 0): one port per process
        lambda stop: serve_router(
            settings.model_copy(
                update={"metrics": settings.metrics.model_copy(update={"port": 0})}
            ),
            registry=registry,
            stop=stop,
        ),
    ):
        await wait_live(settings, "cpu", "m")
        async with DetectProducer(settings=settings) as producer:
            for i in range(4):
                await producer.submit(f"met-{i}", f"text {i}")
        await collect(settings, verdicts=4)
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    backend_topic = settings.topics.backend_cpu
    lines = text.splitlines()

    def sample(prefix: str) -> float:
        [line] = [ln for ln in lines if ln.startswith(prefix)]
        return float(line.rsplit(" ", 1)[1])

    assert sample(f'deepfake_items_in_total{{stage="cpu",topic="{backend_topic}"}}') >= 4
    verdicts_topic = settings.topics.verdicts
    assert sample(f'deepfake_items_out_total{{stage="cpu",topic="{verdicts_topic}"}}') >= 4
    lag = [ln for ln in lines if ln.startswith("deepfake_consumer_lag{") and backend_topic in ln]
    assert lag, "the worker reports its lag per partition"
    assert all('stage="cpu"' in ln and float(ln.rsplit(" ", 1)[1]) >= 0 for ln in lag)
    assert sample('deepfake_backend_live{backend="cpu"}') == 1.0
    for name in (
        "deepfake_batch_size_bucket",
        "deepfake_inference_seconds_bucket",
        "deepfake_end_to_end_latency_seconds_bucket",
        "deepfake_verdicts_total",
    ):
        assert any(ln.startswith(name + "{") for ln in lines), name
