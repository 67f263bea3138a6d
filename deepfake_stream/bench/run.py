"""One ``deepfake-stream bench`` run: the chosen benchmarks on one broker, then the report."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_stream.bench import report
from deepfake_stream.bench.flow import FlowRun
from deepfake_stream.bench.model import ModelBench, pick_backend, run_model
from deepfake_stream.bench.peer import run_peer
from deepfake_stream.bench.pipeline import PipelineBench, run_pipeline
from deepfake_stream.bench.relay import run_relay
from deepfake_stream.bench.texts import load_texts
from deepfake_stream.core.broker_probe import BrokerUnavailable, Probe, probe
from deepfake_stream.core.settings import Settings
from deepfake_stream.models.registry import (
    load_registry,
    load_with_retired,
    retired_ids,
    with_retired,
)

log = logging.getLogger(__name__)
DEFAULT_MODELS = ("tiny-tfidf", "medium-embedding")
"""`medium-embedding` is retired from serving (models/retired.yaml) but stays the transformer
workload of the batching and GPU goals (bench/report.py): the machinery they measure is the
same for every model, and it is the one encoder that ships."""
PIPELINE_SECONDS = 20.0
"""A transformer pipeline run is sized to about this long at its offline batched rate."""


@dataclass(kw_only=True)
class BenchOptions:
    what: str = "all"
    models: Sequence[str] = ()
    n: int = 10_000
    sweep: bool = False
    data: Path | None = None
    backend: str = "auto"
    workers: int | None = None
    in_process: bool = False
    model_budget_s: float = 4.0
    paced_s: float = 10.0
    plot: Path | None = None
    progress: bool | None = None
    store: bool = True
    """pipeline: run the verdict store beside it and measure whether it keeps up."""
    peer: bool = True
    """pipeline: run the FastStream peer (same detector) for the relay-compared models."""


@dataclass(kw_only=True)
class BenchResult:
    meta: dict[str, Any] = field(default_factory=dict)
    relay: FlowRun | None = None
    models: dict[str, ModelBench] = field(default_factory=dict)
    pipelines: dict[str, PipelineBench] = field(default_factory=dict)
    peers: dict[str, FlowRun] = field(default_factory=dict)
    """The FastStream peer's saturation run, per model (bench/peer.py)."""
    idle: Any = None
    """bench/idle.py's IdleBench: `up` with no traffic, and single items after quiet."""
    goals: list[report.Goal] = field(default_factory=list)

    def _sections(self) -> dict[str, Any]:
        return {
            "relay": self.relay,
            "models": self.models,
            "pipelines": self.pipelines,
            "peers": self.peers,
            "goals": self.goals,
            "idle": self.idle,
        }

    def as_json(self) -> dict[str, Any]:
        return report.as_json(meta=self.meta, **self._sections())

    def render(self) -> str:
        return report.render(**self._sections())


@contextlib.contextmanager
def broker_for(settings: Settings, found: Probe) -> Iterator[Settings]:
    """The configured broker when it answers (``found``, the Kafka handshake of
    deepfake_stream.core.broker_probe, as every broker command asks); an embedded one on a free
    port when nothing listens there; when something that is not Kafka listens there, one line
    saying so (BrokerUnavailable: exit 2), never a benchmark against the wrong service."""
    if found.state == "kafka":
        yield settings
        return
    if found.state == "not_kafka":
        raise BrokerUnavailable(found.message)
    from deepfake_stream.embedded_broker import EmbeddedBroker, free_port

    broker = EmbeddedBroker(port=free_port()).start()
    log.info(
        "no broker at %s: benchmarking on an embedded Tansu at %s",
        settings.kafka.bootstrap_servers,
        broker.bootstrap,
    )
    try:
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap})
        yield settings.model_copy(update={"kafka": kafka})
    finally:
        broker.stop()


@contextlib.contextmanager
def serving_retired(settings: Settings, retired: Sequence[str]) -> Iterator[Settings]:
    """Settings whose registry also holds the retired models a benchmark was asked for, so its
    router and workers (child processes, which read ``MODELS_CONFIG``) serve them too."""
    if not retired:
        yield settings
        return
    import tempfile

    import yaml

    log.info("benchmarking retired %s from models/retired.yaml: not served by `up`", retired)
    doc = with_retired(settings.models.config, only=retired)
    with tempfile.TemporaryDirectory(prefix="deepfake-bench-registry-") as tmp:
        path = Path(tmp) / "registry.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        yield settings.model_copy(
            update={"models": settings.models.model_copy(update={"config": path})}
        )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = None
    if "torch" in sys.modules:  # only ask when a benchmark already needed torch
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def run_bench(settings: Settings, opts: BenchOptions) -> BenchResult:
    started = time.perf_counter()
    texts = load_texts(opts.data)
    served = load_registry(settings.models.config, default_model=settings.models.default)
    wanted = list(opts.models) or [
        m for m in DEFAULT_MODELS if m in served.models or m in retired_ids()
    ]
    retired = [m for m in wanted if m not in served.models]
    registry = load_with_retired(
        settings.models.config, only=retired, default_model=settings.models.default
    )
    # The default model's speed goal is a ratio to today's SmolLM2 loop, measured in the same
    # run: offline only, by `model` and `all` when no models were named.
    offline_only: list[str] = []
    if not opts.models and opts.what in ("all", "model"):
        offline_only = [
            m
            for m in (settings.models.default, report.SPEED_BASELINE)
            if m in registry.models and m not in wanted
        ]
    for m in wanted:
        registry.resolve(m)  # unknown ids fail before anything runs
    result = BenchResult()
    do_relay = opts.what in ("all", "relay") or (
        opts.what == "pipeline" and any(m in report.RELAY_MODELS for m in wanted)
    )
    do_models = opts.what in ("all", "model", "pipeline")
    do_pipes = opts.what in ("all", "pipeline")
    with (
        serving_retired(settings, retired) as with_them,
        broker_for(with_them, await probe(with_them)) as s,
    ):
        if do_relay:
            result.relay = await run_relay(
                s, texts, opts.n, in_process=opts.in_process, progress=opts.progress
            )
        if do_models:
            sweep = opts.sweep or (opts.what == "all" and opts.plot is not None)
            budget = opts.model_budget_s if opts.what != "pipeline" else opts.model_budget_s / 2
            for m in [*wanted, *offline_only]:
                result.models[m] = await run_model(
                    s, registry, m, texts, backend=opts.backend, sweep=sweep, budget_s=budget
                )
        if do_pipes:
            for m in wanted:
                offline = result.models.get(m)
                if offline is not None and offline.error:
                    log.warning("skipping the %s pipeline: %s", m, offline.error)
                    continue
                if opts.peer and m in report.RELAY_MODELS:
                    result.peers[m] = await run_peer(s, m, texts, opts.n, progress=opts.progress)
                n = opts.n
                rate = offline.batched.texts_per_s if offline and offline.batched else None
                if m not in report.RELAY_MODELS and offline and offline.batched:
                    n = min(n, max(100, int(offline.batched.texts_per_s * PIPELINE_SECONDS)))
                result.pipelines[m] = await run_pipeline(
                    s,
                    m,
                    texts,
                    n,
                    backend=pick_backend(registry.resolve(m), opts.backend),
                    workers=opts.workers,
                    in_process=opts.in_process,
                    paced_s=opts.paced_s,
                    progress=opts.progress,
                    store=opts.store,
                    offline_rate=rate,
                    batch=offline.configured_batch if offline else None,
                )
        broker = s.kafka.bootstrap_servers
    if opts.what in ("all", "idle"):
        from deepfake_stream.bench.idle import run_idle

        result.idle = await run_idle(settings)  # its own `up`, with its own broker
    result.goals = report.check_goals(
        relay=result.relay,
        models=result.models,
        pipelines=result.pipelines,
        peers=result.peers,
        idle=result.idle,
        max_wait_ms=settings.worker.max_wait_ms,
        default_model=settings.models.default,
    )
    if opts.plot is not None:
        from deepfake_stream.bench.plot import plot_batching

        try:
            plot_batching(result.models.values(), opts.plot)
            log.info("batching plot written to %s", opts.plot)
        except (ImportError, ValueError) as exc:
            log.warning("no plot: %s", exc)
    result.meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "broker": broker,
        "texts": str(opts.data) if opts.data else "built-in",
        "settings": {
            "worker_max_batch_size": settings.worker.max_batch_size,
            "worker_max_wait_ms": settings.worker.max_wait_ms,
            "worker_cpu_workers": settings.worker.cpu_workers,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result
