"""Score labelled JSONL with a registered detector, exactly as a worker would load it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from deepfake_stream.models.dataset import DEFAULT_SEED, Example, load_labelled, select
from deepfake_stream.models.kinds import build_detector
from deepfake_stream.models.metrics import binary_metrics
from deepfake_stream.models.operating_points import resolve_operating_point
from deepfake_stream.models.training import score_texts
from deepfake_stream.text import word_count

if TYPE_CHECKING:
    from deepfake_stream.models.base import Detector
    from deepfake_stream.models.registry import ModelConfig, Registry

Split = Literal["all", "test", "train"]

Scorer = Callable[["Detector", "ModelConfig", Sequence[str]], list[float]]
"""How a batch of texts becomes document scores. Verdicts score normalised texts over windows
(consumers/scoring.py, a layer above this one), so the commands that measure thresholds pass
that path in: a threshold is only valid on scores made the way verdicts make them."""


def raw_scores(detector: Detector, config: ModelConfig, texts: Sequence[str]) -> list[float]:
    """The detector's own score of each text as given (no normalisation, no windows)."""
    return [s.score for s in detector.predict_batch(list(texts))]


class Scored(NamedTuple):
    scores: list[float]
    texts_per_s: float
    version: str
    """The detector's version, as its verdicts carry it."""
    numerics: str | None
    """:attr:`~deepfake_stream.models.base.BaseDetector.numerics`: the machine's kernels the
    scores depend on (None: none)."""


async def _score(
    model_id: str,
    registry: Registry,
    texts: list[str],
    batch_size: int,
    progress: bool,
    scorer: Scorer,
) -> Scored:
    config = registry.resolve(model_id)
    detector = build_detector(config.spec())
    await detector.load()
    try:
        # Inference is synchronous by contract; run it off the loop as workers do.
        scores, per_s = await asyncio.to_thread(
            score_texts,
            lambda batch: scorer(detector, config, batch),
            texts,
            batch_size=batch_size,
            progress=progress,
            desc=model_id,
        )
        return Scored(scores.tolist(), per_s, detector.version, detector.numerics)
    finally:
        await detector.unload()


def score_model(
    model_id: str,
    texts: list[str],
    *,
    registry: Registry,
    batch_size: int = 64,
    progress: bool = True,
    scorer: Scorer = raw_scores,
) -> Scored:
    """The scores of ``texts``, loaded as a worker loads the model and scored by ``scorer``,
    with texts per second, the model version and its numerics."""
    config = registry.resolve(model_id)
    return asyncio.run(_score(config.model_id, registry, texts, batch_size, progress, scorer))


def group_of(example: Example, by: str) -> str:
    """The ``--by`` group of a row: its field's value as text; ``null`` when missing."""
    value = example.fields.get(by)
    if value is None:
        return "null"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def grouped_metrics(
    examples: list[Example],
    scores: list[float],
    threshold: float | Sequence[float],
    by: str | None,
) -> dict[str, Any]:
    """Metrics of all rows, plus per group of field ``by`` under ``groups`` when given;
    ``threshold``: one, or each text's own (a point with a short texts' threshold)."""
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(scores),))
    metrics = binary_metrics([e.label for e in examples], scores, thresholds)
    if by is not None:
        groups: dict[str, list[int]] = {}
        for i, example in enumerate(examples):
            groups.setdefault(group_of(example, by), []).append(i)
        metrics["by"] = by
        metrics["groups"] = {
            name: binary_metrics(
                [examples[i].label for i in rows], [scores[i] for i in rows], thresholds[rows]
            )
            for name, rows in sorted(groups.items())
        }
    return metrics


def evaluate(
    model_id: str,
    data_path: str | os.PathLike[str],
    *,
    registry: Registry,
    split: Split = "all",
    batch_size: int = 64,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    by: str | None = None,
    operating_point: str | None = None,
    scorer: Scorer = raw_scores,
) -> dict[str, Any]:
    """Metrics of ``model_id`` on ``data_path`` (``split``: the whole file, or one side of
    the fixed topic-grouped split used by ``train``) at the threshold of ``operating_point``
    (None: the registry's default); with ``by``, also per group of that field."""
    config = registry.resolve(model_id)
    point, threshold = resolve_operating_point(config, operating_point)
    examples = select(load_labelled(data_path), split, seed=seed)
    scores, per_s, version, _ = score_model(
        config.model_id,
        [e.text for e in examples],
        registry=registry,
        batch_size=batch_size,
        progress=progress,
        scorer=scorer,
    )
    # Each text's threshold, as its verdict would take it (by its words, for a point that has
    # a short texts' threshold).
    per_text = [
        resolve_operating_point(config, operating_point, word_count(e.text))[1] for e in examples
    ]
    short = resolve_operating_point(config, operating_point, 0)[1]
    return {
        **grouped_metrics(examples, scores, per_text, by),
        "texts_per_s": round(per_s, 1),
        "model_id": config.model_id,
        "model_version": version,
        "split": split,
        "threshold": threshold,
        "short_threshold": short if short != threshold else None,
        "operating_point": point,
    }
