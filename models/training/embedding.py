"""Training for kind ``embedding``: MiniLM layer choice and regularisation by topic-grouped
cross-validation on the train split, then one logistic head on the chosen layers.

The pooled states of every layer are extracted once (and cached), so choosing layers costs
only logistic-regression fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deepfake_stream.models.dataset import Example
from deepfake_stream.models.detectors.embedding import HEAD_FILE, MiniLMFeatures, layer_features
from deepfake_stream.models.heads import LogisticHead, select_head
from deepfake_stream.models.training import TrainedModel

DEFAULTS: dict[str, Any] = {
    "max_chars": 4000,
    "max_tokens": 256,
    # Single layers, then the upper half, every other layer, and all six concatenated.
    "layer_candidates": [[1], [2], [3], [4], [5], [6], [4, 5, 6], [2, 4, 6], [1, 2, 3, 4, 5, 6]],
    "C_grid": [0.01, 0.1, 1.0],
    "cv_folds": 5,
    "device": "cpu",
}
TRUNCATION = ("max_chars", "max_tokens")


class CachedPooling:
    def __init__(self, options: dict[str, Any]) -> None:
        from deepfake_stream.models.detectors.embedding import minilm_path
        from deepfake_stream.models.smollm import file_sha256
        from deepfake_stream.models.training.feature_cache import FeatureCache

        self.options = {**DEFAULTS, **options}
        weights = file_sha256(minilm_path() / "model.safetensors")[:16]
        key = {"kind": "embedding", "weights": weights, "pooling": "mean-all-layers"}
        key.update({k: self.options[k] for k in TRUNCATION})
        self.cache = FeatureCache(key)
        self._model: MiniLMFeatures | None = None

    def _extract(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self._model is None:
            from deepfake_stream.models.smollm import configure_threads

            configure_threads(self.options["device"], self.options.get("num_threads"))
            self._model = MiniLMFeatures.from_options(self.options["device"], self.options)
        return {"pooled": self._model.pooled(texts)}

    def pooled(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self.cache.get(texts, self._extract, progress=progress, desc="MiniLM")["pooled"]


def train(
    examples: Sequence[Example], *, options: dict[str, Any], seed: int, progress: bool
) -> TrainedModel:
    opts = {**DEFAULTS, **options}
    pooling = CachedPooling(opts)
    pooled = pooling.pooled([e.text for e in examples], progress=progress)
    y = np.array([e.label for e in examples])
    if "layers" in options:  # fixed by the registry entry: only C is searched
        candidates = {",".join(map(str, options["layers"])): list(options["layers"])}
    else:
        candidates = {",".join(map(str, c)): list(c) for c in opts["layer_candidates"]}
    best, c, table = select_head(
        {name: layer_features(pooled, layers) for name, layers in candidates.items()},
        y,
        [e.group for e in examples],
        c_grid=opts["C_grid"],
        folds=opts["cv_folds"],
        seed=seed,
    )
    layers = candidates[best]
    serving = {k: opts[k] for k in TRUNCATION}
    head = LogisticHead.fit(
        layer_features(pooled, layers),
        y,
        features=[],  # 384 per layer; the layers are named in extra
        c=c,
        extra={"layers": layers, "pooling": "mean", "options": serving},
    )
    return TrainedModel(
        files={HEAD_FILE: head.to_json()},
        scorer=cached_scorer(head.to_json(), opts),
        extra={
            "kind": "embedding",
            "training": {"layers": layers, "C": c, "cv_auroc": table, **serving},
        },
    )


def cached_scorer(head_json: dict[str, Any], options: dict[str, Any]) -> Callable[..., Any]:
    """P(AI) from an exported head, with pooled states from the training cache."""
    head = LogisticHead.from_json(head_json)
    pooling = CachedPooling({**options, **head.extra.get("options", {})})
    layers = [int(x) for x in head.extra["layers"]]
    return lambda texts: head.predict_proba(layer_features(pooling.pooled(texts), layers))
