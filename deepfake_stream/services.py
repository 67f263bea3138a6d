"""One lifespan per service: connect, load, serve, then tear down in reverse order.

``serve_router`` and ``serve_worker`` are what ``deepfake-stream router`` and
``deepfake-stream worker`` run; tests call them in-process with their own settings, stop
event and (for workers) detector doubles.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from aiokafka import AIOKafkaProducer

from consumers.inference_thread import InferenceThread
from consumers.stage import StageRunner
from consumers.worker import OUTPUT_MARGIN_S, Worker
from deepfake_stream.errors import ConfigError
from deepfake_stream.kafka import make_consumer, make_producer, wait_for_broker
from deepfake_stream.metrics import metrics_server, watch_liveness
from deepfake_stream.redis_store import RedisStore
from deepfake_stream.settings import Settings
from deepfake_stream.telemetry import setup_telemetry, shutdown_telemetry
from deepfake_stream.topics import ensure_topics
from models.base import Detector
from models.shared import SHARED
from routing.liveness import HeartbeatPublisher, LivenessView
from routing.registry import Registry, load_registry
from routing.router import Router

log = logging.getLogger(__name__)


def registry_for(settings: Settings) -> Registry:
    return load_registry(settings.models.config, default_model=settings.models.default)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and Ctrl-C ask the service to drain its batch, commit, and exit."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


@asynccontextmanager
async def kafka_lifespan(settings: Settings, role: str) -> AsyncIterator[AIOKafkaProducer]:
    await wait_for_broker(settings)
    await ensure_topics(settings)
    producer = make_producer(settings, role=role)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()  # flushes what is still buffered


@asynccontextmanager
async def liveness_view(settings: Settings) -> AsyncIterator[LivenessView]:
    view = LivenessView(settings)
    await view.start()
    try:
        yield view
    finally:
        await view.stop()


async def _run_stage(
    settings: Settings, runner: StageRunner, *, role: str, count: int | None, timeout: float | None
) -> int:
    await runner.consumer.start()
    try:
        runner.subscribe()
        log.info("%s consuming %s (group %s)", role, list(runner.topics), runner.consumer._group_id)
        return await runner.run(count=count, timeout=timeout)
    finally:
        await runner.consumer.stop()


async def serve_router(
    settings: Settings,
    *,
    registry: Registry | None = None,
    stop: asyncio.Event | None = None,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    registry = registry or registry_for(settings)
    stop = stop or asyncio.Event()
    setup_telemetry(settings, "router")
    async with (
        kafka_lifespan(settings, "router") as producer,
        liveness_view(settings) as view,
    ):
        watch_liveness(view)
        router = Router(settings, registry, view)
        runner = StageRunner(
            consumer=make_consumer(
                settings, group_id=f"{settings.kafka.group_prefix}.router", role="router"
            ),
            producer=producer,
            handler=router,
            stage="router",
            topics=[settings.topics.input],
            max_batch_size=settings.worker.max_batch_size * 4,
            backlog_batch_size=settings.worker.backlog_batch_size * 4,
            max_wait_ms=0,  # routing is cheap: never wait to fill a batch
            stop=stop,
            pipeline=settings.worker.pipeline,
            fetch_idle_wait_ms=settings.kafka.fetch_idle_wait_ms,
            fetch_idle_after_ms=settings.kafka.fetch_idle_after_ms,
            max_attempts=settings.worker.max_batch_attempts,
            batch_timeout_s=settings.worker.batch_timeout_s,
        )
        with metrics_server(settings, "router"):
            n = await _run_stage(settings, runner, role="router", count=count, timeout=timeout)
        shutdown_telemetry()
        log.info(
            "router stopped after %d items: routed %s, dead-lettered %s",
            n,
            router.routed,
            router.dead,
        )
        return n


def inference_threads(configured: int) -> int:
    """WORKER_THREADS, or the cores this process may use minus one (at least one): torch's
    default of every core fights the broker, the router and the event loop for them."""
    if configured:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def set_inference_threads(configured: int) -> None:
    import torch

    n = inference_threads(configured)
    torch.set_num_threads(n)
    log.info("inference threads: %d", n)


def resolve_device(settings: Settings, backend: str) -> str:
    if backend == "cpu":
        return "cpu"
    if backend == "modal":
        return "remote"  # the Modal bridge scores on Modal's GPUs, never on this machine
    if settings.worker.device:
        return settings.worker.device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    raise ConfigError(
        "no CUDA device: the GPU worker does not start on this machine, so the router never "
        "routes to it (set WORKER_DEVICE=cpu only to exercise the GPU code path in tests)"
    )


async def load_detectors(
    registry: Registry, backend: str, device: str, only: set[str] | None = None
) -> dict[str, Detector]:
    """Every model routed to this backend; one that fails to load is left out (routed around)."""
    loaded: dict[str, Detector] = {}
    for config in registry.for_backend(backend):  # type: ignore[arg-type]
        if only and config.model_id not in only:
            continue
        started = time.perf_counter()
        try:
            detector = await SHARED.acquire(config.spec(device))
        except Exception as exc:
            log.error(
                "model %s failed to load on %s (%s: %s); it is routed around",
                config.model_id,
                backend,
                type(exc).__name__,
                exc,
            )
            continue
        loaded[config.model_id] = detector
        log.info(
            "model %s %s loaded on %s (%s) in %.1fs",
            config.model_id,
            detector.version,
            backend,
            device,
            time.perf_counter() - started,
        )
    return loaded


async def serve_worker(
    settings: Settings,
    backend: str,
    *,
    registry: Registry | None = None,
    detectors: dict[str, Detector] | None = None,
    stop: asyncio.Event | None = None,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    registry = registry or registry_for(settings)
    stop = stop or asyncio.Event()
    device = resolve_device(settings, backend)
    only = set(settings.models.only.split(",")) if settings.models.only else None
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(kafka_lifespan(settings, backend))
        if detectors is None:
            detectors = await load_detectors(registry, backend, device, only)
        for d in detectors.values():
            if not d.ready:  # injected detectors (tests) may arrive unloaded
                await d.load()
            stack.push_async_callback(SHARED.release, d)
        if "torch" in sys.modules and backend != "modal":  # a torch model is loaded
            set_inference_threads(settings.worker.threads)
        if not detectors:
            raise ConfigError(f"no model could be loaded for backend {backend}; see the log above")
        view = await stack.enter_async_context(liveness_view(settings))
        watch_liveness(view)
        setup_telemetry(settings, backend)
        stack.callback(shutdown_telemetry)
        stack.enter_context(metrics_server(settings, f"{backend} worker"))
        store = await stack.enter_async_context(RedisStore(settings))  # never fails: may be off
        worker = Worker(
            settings,
            registry,
            backend=backend,
            detectors=detectors,
            liveness=view,
            executor=InferenceThread(f"{backend}-inference"),
            store=store,
        )
        # Not waited for: the last batch is done by then, and a hung call never returns.
        stack.callback(lambda: worker.executor.shutdown(wait=False, cancel_futures=True))
        runner = StageRunner(
            consumer=make_consumer(
                settings, group_id=f"{settings.kafka.group_prefix}.{backend}", role=backend
            ),
            producer=producer,
            handler=worker,
            stage=backend,
            topics=[settings.topics.backend(backend)],  # type: ignore[arg-type]
            max_batch_size=settings.worker.max_batch_size,
            backlog_batch_size=settings.worker.backlog_batch_size,
            max_wait_ms=settings.worker.max_wait_ms,
            stop=stop,
            pipeline=settings.worker.pipeline,
            fetch_idle_wait_ms=settings.kafka.fetch_idle_wait_ms,
            fetch_idle_after_ms=settings.kafka.fetch_idle_after_ms,
            max_attempts=settings.worker.max_batch_attempts,
            # The worker bounds the inference itself (a hung batch's items are handed on);
            # the stage's ceiling is the backstop for the rest of the batch.
            batch_timeout_s=settings.worker.batch_timeout_s + OUTPUT_MARGIN_S,
        )
        beat = HeartbeatPublisher(
            settings,
            producer,
            backend=backend,
            # A worker whose batches keep failing advertises nothing until one succeeds, and
            # a hung model not until its stuck call returns, so the router sends new items
            # to the next backend meanwhile.
            models=lambda: worker.advertised() if runner.healthy else [],
        )
        worker.on_advertised_change = beat.beat_soon
        await beat.start()
        stack.push_async_callback(beat.stop)  # announce leaving before the producer closes
        n = await _run_stage(
            settings, runner, role=f"{backend} worker", count=count, timeout=timeout
        )
        log.info(
            "%s worker stopped after %d items: scored %d, handed on %d, dead-lettered %d",
            backend,
            n,
            worker.scored,
            worker.handed_on,
            worker.dead,
        )
        return n
