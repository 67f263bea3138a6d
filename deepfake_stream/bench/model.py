"""``bench model``: offline throughput of a detector, loaded as a worker loads it.

Scores the benchmark texts as a worker scores them for their verdicts (normalised, language
detected, split into the model's windows, every window scored: ``consumers.scoring``), at
batch 1, at the configured batch (the smaller of WORKER_MAX_BATCH_SIZE and the model's
``max_batch_size``) and, with ``--sweep``, at powers of two up to 256: texts/s, per-batch
p50/p99 compute time, and the batching gain (configured-batch texts/s / batch-1 texts/s).
That is the work the pipeline must do per item, so "pipeline / offline" compares like with
like. ``model_only`` is the detector's own ``predict_batch`` on the raw texts at the
configured batch (no windows, no preparation), to show what the preparation costs.
Each point runs for about ``budget_s`` seconds after one warm-up call. The batch-1 and
configured-batch points also record how busy the cores were (bench/cpu.py): batching can
only gain where batch 1 leaves cores idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepfake_stream.bench.cpu import CpuMeter, CpuShare
from deepfake_stream.bench.flow import percentile
from deepfake_stream.consumers.scoring import document_scores
from deepfake_stream.core.collector import serving_collector
from deepfake_stream.core.settings import Settings
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.registry import ModelConfig, Registry

SWEEP = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(kw_only=True)
class BatchPoint:
    batch_size: int
    texts: int
    seconds: float
    texts_per_s: float
    batch_ms_p50: float
    batch_ms_p99: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "texts": self.texts,
            "seconds": round(self.seconds, 3),
            "texts_per_s": round(self.texts_per_s, 2),  # SmolLM2 models score < 1/s
            "batch_ms_p50": round(self.batch_ms_p50, 2),
            "batch_ms_p99": round(self.batch_ms_p99, 2),
        }


@dataclass(kw_only=True)
class ModelBench:
    model_id: str
    version: str = ""
    device: str = "cpu"
    configured_batch: int = 1
    batch1: BatchPoint | None = None
    batched: BatchPoint | None = None
    model_only: BatchPoint | None = None
    """The detector alone on the raw texts at the configured batch."""
    sweep: list[BatchPoint] = field(default_factory=list)
    error: str | None = None
    cpu: dict[str, CpuShare] = field(default_factory=dict)
    """"batch1", "batched": the machine's and this process's CPU while they ran."""

    @property
    def gain(self) -> float | None:
        if self.batch1 and self.batched and self.batch1.texts_per_s:
            return self.batched.texts_per_s / self.batch1.texts_per_s
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "version": self.version,
            "device": self.device,
            "configured_batch": self.configured_batch,
            "batch1": self.batch1.as_dict() if self.batch1 else None,
            "batched": self.batched.as_dict() if self.batched else None,
            "batching_gain": None if self.gain is None else round(self.gain, 2),
            "model_only": self.model_only.as_dict() if self.model_only else None,
            "sweep": [p.as_dict() for p in self.sweep],
            "error": self.error,
            "cpu": {k: v.as_dict() for k, v in self.cpu.items()},
        }


def configured_batch(settings: Settings, config: ModelConfig) -> int:
    """What a worker actually hands the detector at saturation."""
    return min(settings.worker.max_batch_size, config.max_batch_size or 1 << 30)


def pick_backend(config: ModelConfig, requested: str = "auto") -> str:
    """``auto``: the GPU worker when the model may run there and a GPU is present."""
    if requested != "auto":
        return requested
    if "gpu" in config.chain:
        try:
            import torch

            if torch.cuda.is_available():
                return "gpu"
        except ImportError:
            pass
    return "cpu"


Score = Callable[[list[str]], object]


def measure(
    score: Score, texts: Sequence[str], batch: int, *, budget_s: float, max_texts: int
) -> BatchPoint:
    """Score batches of ``batch`` texts for about ``budget_s`` s (at least 3 batches)."""
    score([texts[i % len(texts)] for i in range(batch)])  # warm-up
    times: list[float] = []
    done = 0
    start = time.perf_counter()
    while True:
        chunk = [texts[(done + i) % len(texts)] for i in range(batch)]
        t0 = time.perf_counter()
        score(chunk)
        times.append(time.perf_counter() - t0)
        done += batch
        elapsed = time.perf_counter() - start
        if len(times) >= 3 and (elapsed >= budget_s or done >= max_texts):
            break
    total = sum(times)
    return BatchPoint(
        batch_size=batch,
        texts=done,
        seconds=total,
        texts_per_s=done / total,
        batch_ms_p50=percentile(times, 50) * 1000,
        batch_ms_p99=percentile(times, 99) * 1000,
    )


async def run_model(
    settings: Settings,
    registry: Registry,
    model_id: str,
    texts: Sequence[str],
    *,
    backend: str = "auto",
    sweep: bool = False,
    budget_s: float = 4.0,
    max_texts: int = 5_000,
) -> ModelBench:
    from deepfake_stream.consumers.service import resolve_device

    config = registry.resolve(model_id)
    bench = ModelBench(model_id=model_id, configured_batch=configured_batch(settings, config))
    try:
        bench.device = resolve_device(settings, pick_backend(config, backend))
        detector = build_detector(config.spec(bench.device))
        await detector.load()
    except Exception as exc:  # reported as unavailable, like a worker routes around it
        bench.error = f"{type(exc).__name__}: {exc}"
        return bench
    try:
        bench.version = detector.version
        windows = settings.limits.max_windows

        def as_verdicts(chunk: list[str]) -> object:
            return document_scores(detector, config, chunk, windows)

        def point(score: Score, batch: int) -> BatchPoint:
            return measure(score, texts, batch, budget_s=budget_s, max_texts=max_texts)

        # Measured as a worker runs it: the collector set for serving.
        with serving_collector("bench model"):
            meter = CpuMeter().start()
            bench.batch1 = point(as_verdicts, 1)
            bench.cpu["batch1"] = meter.stop()
            meter.start()
            bench.batched = point(as_verdicts, bench.configured_batch)
            bench.cpu["batched"] = meter.stop()
            bench.model_only = point(detector.predict_batch, bench.configured_batch)
        if sweep:
            for b in SWEEP:
                if b == 1:
                    bench.sweep.append(bench.batch1)
                elif b == bench.configured_batch:
                    bench.sweep.append(bench.batched)
                else:
                    bench.sweep.append(point(as_verdicts, b))
            if bench.configured_batch not in SWEEP:
                bench.sweep.append(bench.batched)
                bench.sweep.sort(key=lambda p: p.batch_size)
    finally:
        await detector.unload()
    return bench
