"""Score labelled JSONL with a registered detector, exactly as a worker would load it."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Literal

from models.dataset import DEFAULT_SEED, load_labelled, select
from models.kinds import build_detector
from models.metrics import binary_metrics
from models.training import score_texts

if TYPE_CHECKING:
    from routing.registry import Registry

Split = Literal["all", "test", "train"]


async def _score(
    model_id: str, registry: Registry, texts: list[str], batch_size: int, progress: bool
) -> tuple[list[float], float, str]:
    config = registry.resolve(model_id)
    detector = build_detector(config.spec())
    await detector.load()
    try:
        # Inference is synchronous by contract; run it off the loop as workers do.
        scores, per_s = await asyncio.to_thread(
            score_texts,
            lambda batch: [s.score for s in detector.predict_batch(batch)],
            texts,
            batch_size=batch_size,
            progress=progress,
            desc=model_id,
        )
        return scores.tolist(), per_s, detector.version
    finally:
        await detector.unload()


def evaluate(
    model_id: str,
    data_path: str | os.PathLike[str],
    *,
    registry: Registry,
    split: Split = "all",
    batch_size: int = 64,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics of ``model_id`` on ``data_path`` (``split``: the whole file, or one side of
    the fixed topic-grouped split used by ``train``)."""
    config = registry.resolve(model_id)
    examples = select(load_labelled(data_path), split, seed=seed)
    texts = [e.text for e in examples]
    scores, per_s, version = asyncio.run(
        _score(config.model_id, registry, texts, batch_size, progress)
    )
    metrics = binary_metrics([e.label for e in examples], scores, config.threshold)
    return {
        **metrics,
        "texts_per_s": round(per_s, 1),
        "model_id": config.model_id,
        "model_version": version,
        "split": split,
    }
