"""Scoring a batch so one bad text cannot take its neighbours down.

When ``predict_batch`` raises, the batch is split in half and each half retried, down to
single items: only the culprit fails, everything else is scored, at a cost of about
2·log2(n) extra calls per culprit. The same halving answers CUDA running out of memory: a
batch too big for the card is retried as two smaller ones before any item is given up.
A :class:`BackendUnavailable` (the backend itself is down) fails the whole batch at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from deepfake_stream.core.errors import BackendUnavailable, ModelError
from deepfake_stream.models.base import Detector, Score

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    score: Score | None
    error: BaseException | None
    batch_size: int
    """Size of the predict_batch call that produced this outcome."""


def _checked(detector: Detector, texts: Sequence[str]) -> list[Score]:
    scores = detector.predict_batch(texts)
    if len(scores) != len(texts):
        raise ModelError(f"detector returned {len(scores)} scores for {len(texts)} texts")
    for s in scores:
        if not (isinstance(s.score, float | int) and math.isfinite(s.score) and 0 <= s.score <= 1):
            raise ModelError(f"detector returned an invalid score {s.score!r}")
    return scores


def _free_accelerator_memory(exc: BaseException) -> None:
    if type(exc).__name__ == "OutOfMemoryError":
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # best effort only
            pass


def score_isolating(detector: Detector, texts: Sequence[str]) -> list[Outcome]:
    """One outcome per text, in order. Runs in the worker's inference thread."""
    if not texts:
        return []
    try:
        scores = _checked(detector, texts)
        return [Outcome(s, None, len(texts)) for s in scores]
    except Exception as exc:
        _free_accelerator_memory(exc)
        if isinstance(exc, BackendUnavailable):
            # The backend is down, not an item: splitting would only repeat the failure.
            return [Outcome(None, exc, len(texts)) for _ in texts]
        if len(texts) == 1:
            return [Outcome(None, exc, 1)]
        log.info(
            "batch of %d failed (%s); splitting to find the culprit", len(texts), type(exc).__name__
        )
        mid = len(texts) // 2
        return score_isolating(detector, texts[:mid]) + score_isolating(detector, texts[mid:])
