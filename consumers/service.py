"""A worker as a service: connect, load its backend's models, serve, then tear down in reverse
order. ``deepfake-stream worker`` and ``deepfake-stream modal-bridge`` run :func:`serve_worker`;
tests call it in-process with their own settings, stop event and detector doubles."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from contextlib import AsyncExitStack

from deepfake_stream.consumers.inference_thread import InferenceThread
from deepfake_stream.consumers.redis_store import RedisStore
from deepfake_stream.consumers.worker import OUTPUT_MARGIN_S, Worker
from deepfake_stream.core.cores import available_cores
from deepfake_stream.core.errors import ConfigError
from deepfake_stream.core.liveness import HeartbeatPublisher
from deepfake_stream.core.metrics import metrics_server, watch_liveness
from deepfake_stream.core.service import kafka_lifespan, liveness_view, run_stage
from deepfake_stream.core.settings import BACKENDS, Backend, Settings
from deepfake_stream.core.stage import StageRunner
from deepfake_stream.core.telemetry import setup_telemetry, shutdown_telemetry
from deepfake_stream.models.base import Detector
from deepfake_stream.models.registry import Registry, registry_for
from deepfake_stream.models.shared import SHARED
from deepfake_stream.text.language import load_profiles

log = logging.getLogger(__name__)


def set_inference_threads(configured: int, backend: str, most: int = 0) -> int:
    """Apply WORKER_THREADS; returns the cores to tune the thread count over when it is 0 on
    a CPU worker (``consumers/thread_tuner.py``: measured, per model), at most ``most``
    (WORKER_THREADS_MAX; 0: no limit), else 0 (fixed). OMP_NUM_THREADS, when set, and a
    model's registry ``num_threads`` are kept as set."""
    import torch

    if configured:
        torch.set_num_threads(configured)
        log.info("inference threads: %d (WORKER_THREADS)", configured)
        return 0
    if os.environ.get("OMP_NUM_THREADS"):  # torch already honours it: an operator's choice
        log.info("inference threads: %s (OMP_NUM_THREADS)", os.environ["OMP_NUM_THREADS"])
        return 0
    cores = available_cores()
    if backend != "cpu":  # a GPU worker's torch threads only feed the GPU
        torch.set_num_threads(max(1, cores - 1))
        log.info("inference threads: %d", max(1, cores - 1))
        return 0
    if most:
        cores = min(cores, most)
    log.info("inference threads: tuned by measured speed between 1 and %d", cores)
    return cores


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
    registry: Registry, backend: Backend, device: str, only: set[str] | None = None
) -> dict[str, Detector]:
    """Every model routed to this backend; one that fails to load is left out (routed around)."""
    loaded: dict[str, Detector] = {}
    for config in registry.for_backend(backend):
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
    if backend not in BACKENDS:  # a command-line string until here
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    registry = registry or registry_for(settings)
    stop = stop or asyncio.Event()
    device = resolve_device(settings, backend)
    only = set(settings.models.only.split(",")) if settings.models.only else None
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(kafka_lifespan(settings, backend))
        if detectors is None:
            detectors = await load_detectors(registry, backend, device, only)
        # Text preparation detects languages: load its profiles now, not in the first batch
        # (whose WORKER_BATCH_TIMEOUT_S the load would eat).
        await asyncio.to_thread(load_profiles)
        for d in detectors.values():
            if not d.ready:  # injected detectors (tests) may arrive unloaded
                await d.load()
            stack.push_async_callback(SHARED.release, d)
        tune_threads = 0
        if "torch" in sys.modules and backend != "modal":  # a torch model is loaded
            tune_threads = set_inference_threads(
                settings.worker.threads, backend, settings.worker.threads_max
            )
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
            tune_threads=tune_threads,
        )
        # Not waited for: the last batch is done by then, and a hung call never returns.
        stack.callback(lambda: worker.executor.shutdown(wait=False, cancel_futures=True))
        runner = StageRunner(
            producer=producer,
            handler=worker,
            stage=backend,
            topics=[settings.topics.backend(backend)],
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
        n = await run_stage(
            settings,
            runner,
            group_id=f"{settings.kafka.group_prefix}.{backend}",
            role=f"{backend} worker",
            count=count,
            timeout=timeout,
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
