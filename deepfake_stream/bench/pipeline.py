"""``bench pipeline``: the real router and worker(s) with the real detector.

By default each service is a child process started with its standalone command
(``deepfake-stream router``, ``deepfake-stream worker --backend cpu``), exactly as `up`
runs them; ``in_process`` runs them as tasks of this event loop instead (one core: not
representative of a deployment, but useful under a profiler).

After the worker announces itself and a warm-up batch has come through, ``n`` items are
published as fast as the broker acknowledges (saturation: items/s, latency), then items are
published at 50% of the measured saturation rate for about ``paced_s`` seconds (latency at
half load). Each of the two runs also records where the CPU went (bench/cpu.py: the broker
when it is embedded, the router, the workers, this process's producer and reader, the
machine), so a missed goal can say whose CPU it was.

With ``store`` the verdict store runs beside them (``deepfake-stream store``) and the
saturation run also measures how fast its verdicts become database rows (bench/store.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deepfake_stream.bench.cpu import CpuMeter, CpuShare
from deepfake_stream.bench.flow import FlowRun, drive
from deepfake_stream.bench.procs import Children, settings_env
from deepfake_stream.bench.store import StoreFigure
from deepfake_stream.core.kafka import wait_for_broker
from deepfake_stream.core.liveness import LivenessView
from deepfake_stream.core.settings import Settings, TopicSettings
from deepfake_stream.core.topics import ensure_topics


@dataclass(kw_only=True)
class PipelineBench:
    model_id: str
    backend: str
    workers: int
    mode: str
    saturation: FlowRun
    half_load: FlowRun | None
    store: StoreFigure | None = None
    cpu: dict[str, CpuShare] = field(default_factory=dict)
    """Per run ("saturation", "half_load"): CPU of each process and of the machine."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "backend": self.backend,
            "workers": self.workers,
            "mode": self.mode,
            "saturation": self.saturation.as_dict(),
            "half_load": self.half_load.as_dict() if self.half_load else None,
            "store": self.store.as_dict() if self.store else None,
            "cpu": {phase: share.as_dict() for phase, share in self.cpu.items()},
        }


def bench_settings(settings: Settings, run_id: str) -> Settings:
    """The same settings on fresh topics and consumer groups, so runs never mix."""
    topics = TopicSettings(
        **{name: f"bench-{run_id}.{name}" for name in TopicSettings.model_fields}
    )
    kafka = settings.kafka.model_copy(update={"group_prefix": f"bench-{run_id}"})
    return settings.model_copy(update={"topics": topics, "kafka": kafka})


async def wait_live(settings: Settings, backend: str, model_id: str, timeout: float) -> None:
    view = LivenessView(settings)
    await view.start()
    try:
        async with asyncio.timeout(timeout):
            while not view.alive(backend, model_id):
                await view.wait_changed(0.5)
    finally:
        await view.stop()


def items(
    texts: Sequence[str], n: int, prefix: str, model_id: str, backend: str
) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        item_id = f"bench-{prefix}-{i}"
        doc = {
            "id": item_id,
            "text": texts[i % len(texts)],
            "model_id": model_id,
            "prefer_backend": backend,
        }
        out.append((item_id, json.dumps(doc).encode()))
    return out


async def run_pipeline(
    settings: Settings,
    model_id: str,
    texts: Sequence[str],
    n: int,
    *,
    backend: str = "cpu",
    workers: int | None = None,
    in_process: bool = False,
    paced_s: float = 10.0,
    load_timeout: float = 300.0,
    progress: bool | None = None,
    store: bool = False,
    offline_rate: float | None = None,
    batch: int | None = None,
) -> PipelineBench:
    """``offline_rate`` (texts/s, when measured) and ``batch`` (the configured batch) size
    the warm-up and the time limits, so a model scoring one text a second is waited for as
    long as its texts need, not cut off at a limit made for thousands a second."""
    await wait_for_broker(settings)
    run_id = uuid.uuid4().hex[:8]
    s = bench_settings(settings, run_id)
    await ensure_topics(s)
    workers = max(1, workers or (settings.worker.cpu_workers if backend == "cpu" else 1))
    s = s.model_copy(update={"models": s.models.model_copy(update={"only": model_id})})
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    figure: StoreFigure | None = None
    with Children() as children:
        if store:
            from deepfake_stream.bench import store as bench_store

            s = bench_store.store_settings(s, children.log_dir)
            await bench_store.prepare(s)
        if in_process:
            from deepfake_stream.consumers.service import serve_worker
            from deepfake_stream.routing.service import serve_router

            tasks.append(asyncio.create_task(serve_router(s, stop=stop)))
            tasks += [
                asyncio.create_task(serve_worker(s, backend, stop=stop)) for _ in range(workers)
            ]
            if store:
                from deepfake_stream.store.service import serve_store

                tasks.append(asyncio.create_task(serve_store(s, stop=stop)))
        else:
            from deepfake_stream.supervisor import console_command, cpu_worker_args

            env = settings_env(s)
            children.start("router", [*console_command(), "router"], env)
            worker = (
                cpu_worker_args(s, workers)
                if backend == "cpu"
                else ["worker", "--backend", backend]
            )
            for i in range(workers):
                children.start(f"worker-{backend}-{i}", [*console_command(), *worker], env)
            if store:
                children.start("store", [*console_command(), "store"], env)
        try:
            started = time.monotonic()
            while True:  # a child that dies while loading fails fast, with its log
                children.check()
                for t in tasks:
                    if t.done():
                        t.result()
                try:
                    await wait_live(s, backend, model_id, timeout=2.0)
                    break
                except TimeoutError:
                    if time.monotonic() - started > load_timeout:
                        raise
            warm = max(2 * (batch or settings.worker.max_batch_size), 20)
            await drive(
                s,
                in_topic=s.topics.input,
                out_topic=s.topics.verdicts,
                items=items(texts, warm, f"w{run_id}", model_id, backend),
                timeout=load_timeout,
                label=f"{model_id} warm-up",
                progress=progress,
            )
            saturation_started = time.monotonic()
            meter = CpuMeter().start()
            saturation = await drive(
                s,
                in_topic=s.topics.input,
                out_topic=s.topics.verdicts,
                items=items(texts, n, f"s{run_id}", model_id, backend),
                timeout=_limit(n, offline_rate),
                label=f"{model_id} saturation",
                progress=progress,
            )
            cpu = {"saturation": meter.stop()}
            if store:
                verdicts_done = time.monotonic()
                rows, done = await bench_store.wait_rows(
                    s, f"bench-s{run_id}-", n, timeout=_limit(n, offline_rate)
                )
                figure = bench_store.figure(
                    s,
                    n=n,
                    rows=rows,
                    started=saturation_started,
                    done=done,
                    verdicts_done=verdicts_done,
                    pipeline_items_per_s=saturation.items_per_s,
                )
                figure.capacity_rows_per_s = await bench_store.capacity(s, n)
            children.check()
            half_rate = saturation.items_per_s / 2
            paced_n = int(min(max(half_rate * paced_s, 50), max(n, 50)))
            meter = CpuMeter().start()
            half = await drive(
                s,
                in_topic=s.topics.input,
                out_topic=s.topics.verdicts,
                items=items(texts, paced_n, f"h{run_id}", model_id, backend),
                rate=half_rate,
                timeout=max(120.0, paced_s * 4, _limit(paced_n, half_rate)),
                label=f"{model_id} 50% load",
                progress=progress,
            )
            cpu["half_load"] = meter.stop()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    return PipelineBench(
        model_id=model_id,
        backend=backend,
        workers=workers,
        mode="in-process" if in_process else "processes",
        saturation=saturation,
        half_load=half,
        store=figure,
        cpu=cpu,
    )


def _limit(n: int, rate: float | None) -> float:
    """Seconds to wait for ``n`` verdicts: at least 2 minutes, and 3x what ``rate`` needs."""
    return max(120.0, n / 20, 3 * n / rate if rate else 0.0)
