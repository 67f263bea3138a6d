"""Stacking: tiny-tfidf, small-perplexity and medium-embedding combined by learned weights.

The members are ordinary registered models, resolved by the registry that holds the ensemble
(:attr:`deepfake_stream.models.base.DetectorSpec.members`) and built with
:func:`deepfake_stream.models.kinds.build_detector`. A logistic regression on their logits
(fitted on out-of-fold predictions of the train split, see
:mod:`deepfake_stream.models.training.ensemble`) combines them. The manifest records the member
versions it was fitted against; a member retrained since then still loads, with a warning,
because its weights may now be stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from deepfake_stream.core.errors import ConfigError, ModelUnavailable
from deepfake_stream.models.base import BaseDetector, Detector, DetectorSpec, Score
from deepfake_stream.models.heads import LogisticHead
from deepfake_stream.models.kinds import DetectorKind
from deepfake_stream.models.shared import SHARED

log = logging.getLogger(__name__)

HEAD_FILE = "stacker.json"
DEFAULT_MEMBERS = ["tiny-tfidf", "small-perplexity", "medium-embedding"]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


class EnsembleDetector(BaseDetector):
    """Detector kind ``ensemble`` (options: ``members``, a list of registered model ids)."""

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__(spec)
        self._members: list[Detector] = []
        self._head: LogisticHead | None = None

    async def load_model(self) -> str:
        from deepfake_stream.models.artifacts import load_verified

        if not self.spec.artifact:
            raise ModelUnavailable(f"{self.spec.model_id}: no artifact configured")
        manifest = await asyncio.to_thread(load_verified, self.spec.artifact)
        head = LogisticHead.from_json(manifest.read_json(HEAD_FILE))
        specs = list(self.spec.members)
        if not specs:
            raise ConfigError(
                f"{self.spec.model_id}: no members resolved; list them in options.members of "
                "its registry entry and build its spec from that registry"
            )
        if [s.model_id for s in specs] != head.features:
            raise ConfigError(
                f"{self.spec.model_id}: registry members {[s.model_id for s in specs]} differ "
                f"from the trained ones {head.features}; retrain the ensemble"
            )
        # Shared: a worker that also serves the members holds one copy of each, not two.
        members: list[Detector] = []
        try:
            for spec in specs:  # one at a time: each loads off the loop already
                members.append(await SHARED.acquire(spec))
        except BaseException:
            await asyncio.gather(*(SHARED.release(m) for m in members), return_exceptions=True)
            raise
        trained = head.extra.get("member_versions", {})
        for m in members:
            if trained.get(m.spec.model_id) not in (None, m.version):
                log.warning(
                    "%s: member %s is %s, the stacker was fitted on %s; retrain the ensemble",
                    self.spec.model_id,
                    m.spec.model_id,
                    m.version,
                    trained[m.spec.model_id],
                )
        self._members, self._head = members, head
        return manifest.versioned(self.spec.version)

    def predict(self, texts: Sequence[str]) -> list[Score]:
        head = self.loaded(self._head)
        member_scores = [m.predict_batch(texts) for m in self._members]
        z = logit(np.array([[s.score for s in col] for col in member_scores]).T)
        probs = head.predict_proba(z)
        return [
            Score(
                score=float(p),
                details={
                    n: round(float(col[i].score), 6)
                    for n, col in zip(head.features, member_scores, strict=True)
                },
            )
            for i, p in enumerate(probs)
        ]

    async def unload_model(self) -> None:
        members, self._members, self._head = self._members, [], None
        await asyncio.gather(*(SHARED.release(m) for m in members), return_exceptions=True)


KIND = DetectorKind(
    name="ensemble",
    detector=EnsembleDetector,
    trainer="deepfake_stream.models.training.ensemble:train",
)
