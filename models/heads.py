"""A standardise-then-logistic head stored as plain JSON (no pickle).

Shared by the perplexity, embedding and ensemble detectors: scikit-learn fits it at training
time, numpy applies it at serving time, so workers never unpickle anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(kw_only=True)
class LogisticHead:
    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    extra: dict[str, Any] = field(default_factory=dict)
    """Kind-specific settings stored with the head (layers, pooling, CV results, ...)."""

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        *,
        features: list[str],
        c: float = 1.0,
        extra: dict[str, Any] | None = None,
    ) -> LogisticHead:
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        # Balanced: the corpus is 80% AI, and the registry threshold 0.5 should not be.
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        clf.fit((x - mean) / scale, np.asarray(y))
        return cls(
            features=list(features),
            mean=mean,
            scale=scale,
            coef=clf.coef_[0].astype(np.float64),
            intercept=float(clf.intercept_[0]),
            extra=dict(extra or {}),
        )

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(x))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "standardised-logistic-regression",
            "features": self.features,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LogisticHead:
        head = cls(
            features=list(doc["features"]),
            mean=np.asarray(doc["mean"], dtype=np.float64),
            scale=np.asarray(doc["scale"], dtype=np.float64),
            coef=np.asarray(doc["coef"], dtype=np.float64),
            intercept=float(doc["intercept"]),
            extra=dict(doc.get("extra") or {}),
        )
        n = len(head.coef)
        if not (len(head.mean) == len(head.scale) == n) or (
            head.features and len(head.features) != n
        ):
            raise ValueError(f"head has inconsistent shapes (coef {n}, mean {len(head.mean)})")
        return head


def grouped_folds(
    y: np.ndarray, groups: Sequence[str], *, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, topic-grouped K-fold indices (a topic never straddles train and validation)."""
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y, list(groups)))


def select_head(
    candidates: dict[str, np.ndarray],
    y: np.ndarray,
    groups: Sequence[str],
    *,
    c_grid: Sequence[float],
    folds: int,
    seed: int,
) -> tuple[str, float, dict[str, float]]:
    """Pick the feature set and C with the best out-of-fold AUROC; returns (name, C, table)."""
    from sklearn.metrics import roc_auc_score

    splits = grouped_folds(y, groups, folds=folds, seed=seed)
    table: dict[str, float] = {}
    for name, x in candidates.items():
        for c in c_grid:
            oof = np.zeros(len(y))
            for tr, va in splits:
                oof[va] = LogisticHead.fit(x[tr], y[tr], features=[], c=c).logits(x[va])
            table[f"{name}|C={c:g}"] = round(float(roc_auc_score(y, oof)), 5)
    best = max(table, key=lambda k: table[k])
    name, _, c_text = best.partition("|C=")
    return name, float(c_text), table


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def training_subset(examples: Sequence[Any], limit: int | None, seed: int) -> list[Any]:
    """At most ``limit`` examples: the first of a seeded permutation (all when ``None``).

    For trainers whose features are expensive (SmolLM2 costs ~1 s per text on CPU): a
    head with a handful of weights needs hundreds of texts, not thousands, and the same
    seed always picks the same texts, so cached features are reused."""
    if limit is None or len(examples) <= limit:
        return list(examples)
    order = np.random.default_rng(seed).permutation(len(examples))[: int(limit)]
    return [examples[i] for i in sorted(order)]


@dataclass(frozen=True)
class LoadedHead:
    """What a head-based detector needs at load: its head, options and versioned name."""

    head: LogisticHead
    options: dict[str, Any]
    """The options the head was trained with, overridden by the registry entry's."""
    version: str


def load_head(spec: Any, head_file: str = "head.json") -> LoadedHead:
    """Verify the artifact (sha256 manifest), read its JSON head, merge options and set the
    torch thread count: the shared first half of every head-based detector's ``load``."""
    from deepfake_stream.core.errors import ModelUnavailable
    from deepfake_stream.models.artifacts import load_verified
    from deepfake_stream.models.smollm import configure_threads

    if not spec.artifact:
        raise ModelUnavailable(f"{spec.model_id}: no artifact configured")
    manifest = load_verified(spec.artifact)
    head = LogisticHead.from_json(manifest.read_json(head_file))
    options = {**head.extra.get("options", {}), **spec.options}
    configure_threads(spec.device, options.get("num_threads"))
    return LoadedHead(head=head, options=options, version=manifest.versioned(spec.version))
