"""Prometheus metrics of every stage, and the tiny /metrics endpoint the router and workers run.

All metrics live in prometheus_client's default registry, so the HTTP shim exposes the same
set (its own process's values) at its /metrics. Names and labels are part of what operators
build dashboards on: they are listed in the README's "Metrics" section; keep both in step.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from deepfake_stream.core.headers import parse_headers
from deepfake_stream.core.settings import BACKENDS, Settings

if TYPE_CHECKING:
    from deepfake_stream.core.liveness import LivenessView
    from deepfake_stream.core.stage import Outgoing

log = logging.getLogger(__name__)

ITEMS_IN = Counter(
    "deepfake_items_in",
    "Messages a stage handled, by stage and the topic they were read from "
    "(held items are counted when finally handled).",
    ["stage", "topic"],
)
ITEMS_OUT = Counter(
    "deepfake_items_out",
    "Messages a stage produced and the broker acknowledged, by stage and topic.",
    ["stage", "topic"],
)
BATCH_SIZE = Histogram(
    "deepfake_batch_size",
    "Texts per inference batch, by backend and model.",
    ["backend", "model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
INFERENCE_SECONDS = Histogram(
    "deepfake_inference_seconds",
    "Wall time of one inference batch (culprit isolation included), by model and backend.",
    ["model", "backend"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
END_TO_END_SECONDS = Histogram(
    "deepfake_end_to_end_latency_seconds",
    "From an item's first sight by the system (router read) to its verdict, by model and "
    "backend that scored it.",
    ["model", "backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
VERDICTS = Counter(
    "deepfake_verdicts",
    "Verdicts produced, by model, backend and label.",
    ["model", "backend", "label"],
)
FALLBACKS = Counter(
    "deepfake_fallbacks",
    "Items handed from a failing backend to the next backend of their chain.",
    ["from_backend", "to_backend"],
)
DEAD_LETTERS = Counter(
    "deepfake_dead_letters",
    "Dead letters the broker acknowledged, by reason and the stage that wrote them.",
    ["reason", "stage"],
)
CACHE_HITS = Counter(
    "deepfake_cache_hits",
    "Verdict cache hits (inference skipped), by model.",
    ["model"],
)
CACHE_MISSES = Counter(
    "deepfake_cache_misses",
    "Verdict cache misses (scored by the model), by model.",
    ["model"],
)
DUPLICATES_DROPPED = Counter(
    "deepfake_duplicates_dropped",
    "Items not scored again because their verdict (tenant, id, model_version, text_sha256) "
    "was already published, by stage and model.",
    ["stage", "model"],
)
MODEL_HUNG = Gauge(
    "deepfake_model_hung",
    "1 while a model's inference on this worker has run past WORKER_BATCH_TIMEOUT_S and not "
    "returned (the model is not advertised meanwhile), else 0.",
    ["model", "backend"],
)
CONSUMER_LAG = Gauge(
    "deepfake_consumer_lag",
    "Messages behind the partition's high watermark after the stage's latest batch.",
    ["stage", "topic", "partition"],
)


class _LivenessCollector(Collector):
    """``deepfake_backend_live{backend}``: 1 while some worker of that backend is live, as
    the liveness views of this process see it at scrape time."""

    def __init__(self) -> None:
        self._views: weakref.WeakSet[LivenessView] = weakref.WeakSet()

    def watch(self, view: LivenessView) -> None:
        self._views.add(view)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        views = list(self._views)
        if not views:
            return
        live = GaugeMetricFamily(
            "deepfake_backend_live",
            "1 while at least one worker of the backend announces itself (heartbeat younger "
            "than WORKER_HEARTBEAT_TTL_S), else 0.",
            labels=["backend"],
        )
        models = GaugeMetricFamily(
            "deepfake_backend_models",
            "Models with at least one live worker, per backend.",
            labels=["backend"],
        )
        for backend in BACKENDS:
            served: set[str] = set()
            for v in views:
                served.update(v.live_backends().get(backend, ()))
            alive = any(v.alive(backend) for v in views)
            live.add_metric([backend], 1.0 if alive else 0.0)
            models.add_metric([backend], float(len(served)))
        yield live
        yield models


_LIVENESS = _LivenessCollector()
REGISTRY.register(_LIVENESS)


def watch_liveness(view: LivenessView) -> None:
    """Report this view's backends in ``deepfake_backend_live`` (held weakly)."""
    _LIVENESS.watch(view)


@contextmanager
def metrics_server(settings: Settings, role: str) -> Iterator[int | None]:
    """Serve /metrics on ``METRICS_HOST:METRICS_PORT`` while inside; port 0 means off.

    A port that cannot be bound is logged, not fatal: scoring matters more than metrics.
    Yields the port served, or None.
    """
    port = settings.metrics.port
    if not port:
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=settings.metrics.host)
    except OSError as exc:
        log.warning(
            "%s: cannot serve metrics on %s:%d (%s); running without /metrics",
            role,
            settings.metrics.host,
            port,
            exc,
        )
        yield None
        return
    log.info("%s metrics at http://%s:%d/metrics", role, settings.metrics.host, port)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def observe_batch(
    stage: str,
    consumer: AIOKafkaConsumer,
    records: Sequence[ConsumerRecord],
    hold: dict[TopicPartition, int],
    out: Sequence[Outgoing],
) -> None:
    """After a batch is acknowledged and committed: items in and out, dead letters by
    reason, and the consumer lag of every partition the batch read.

    Counted per topic and added once: a labelled child's lookup and increment per item cost
    ~5% of the router's CPU at saturation (py-spy, 2026-12-05)."""
    next_offset: dict[TopicPartition, int] = {}
    counted_in: dict[str, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        if r.offset < hold.get(tp, 1 << 62):
            counted_in[r.topic] = counted_in.get(r.topic, 0) + 1
        next_offset[tp] = max(next_offset.get(tp, 0), r.offset + 1)
    for topic, n in counted_in.items():
        ITEMS_IN.labels(stage, topic).inc(n)
    for tp, first_unhandled in hold.items():
        next_offset[tp] = first_unhandled
    counted_out: dict[str, int] = {}
    for o in out:
        counted_out[o.topic] = counted_out.get(o.topic, 0) + 1
        if any(k == "dlq.reason" for k, _ in o.headers):  # only dead letters are parsed
            headers = parse_headers(o.headers)
            reason = headers["dlq.reason"]
            DEAD_LETTERS.labels(reason, headers.get("dlq.stage") or stage).inc()
    for topic, n in counted_out.items():
        ITEMS_OUT.labels(stage, topic).inc(n)
    for tp, position in next_offset.items():
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # partition no longer assigned (rebalance)
            continue
        if highwater is not None:
            CONSUMER_LAG.labels(stage, tp.topic, str(tp.partition)).set(
                max(0, highwater - position)
            )
