"""Training for kind ``perplexity``: SmolLM2 statistics on the train split, then a logistic
head whose regularisation is chosen by topic-grouped cross-validation.

Features are cached (:mod:`deepfake_stream.models.training.feature_cache`) keyed by the GGUF
digest and the truncation limits, so re-training, stacking and the held-out scoring reuse them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deepfake_stream.models.dataset import Example
from deepfake_stream.models.detectors.perplexity import (
    FEATURES,
    HEAD_FILE,
    HIDDEN_NAMES,
    LMStatistics,
    head_inputs,
)
from deepfake_stream.models.heads import LogisticHead, select_head, training_subset
from deepfake_stream.models.training import TrainedModel

DEFAULTS: dict[str, Any] = {
    "max_chars": 4000,
    "max_tokens": 256,
    "C_grid": [0.01, 0.1, 1.0, 10.0],
    "cv_folds": 5,
    "device": "cpu",
    "max_train_texts": None,
    # "stats+hidden" adds SmolLM2's mean-pooled last hidden state to the statistics; it is
    # chosen only if cross-validation says it beats the statistics alone by hidden_margin
    # AUROC, because the zero-shot statistics transfer better to unseen generators.
    "feature_sets": ["stats", "stats+hidden"],
    "hidden_margin": 0.02,
}
TRUNCATION = ("max_chars", "max_tokens")


class CachedStatistics:
    """SmolLM2 loaded on first use; features served from the training cache when present."""

    def __init__(self, options: dict[str, Any]) -> None:
        from deepfake_stream.models.smollm import file_sha256, gguf_path
        from deepfake_stream.models.training.feature_cache import FeatureCache

        self.options = {**DEFAULTS, **options}
        key = {"kind": "perplexity", "gguf": file_sha256(gguf_path())[:16], "features": 2}
        key.update({k: self.options[k] for k in TRUNCATION})
        self.cache = FeatureCache(key)
        self._stats: LMStatistics | None = None

    def _extract(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self._stats is None:
            from deepfake_stream.models.smollm import configure_threads, load_smollm

            device = self.options["device"]
            configure_threads(device, self.options.get("num_threads"))
            lm = load_smollm(device)
            self._stats = LMStatistics.from_options(lm.model, lm.tokenizer, self.options)
        feats, hidden = self._stats.extract(texts)
        return {"features": feats, "hidden": hidden}

    def inputs(
        self, texts: Sequence[str], feature_set: str, *, progress: bool = False
    ) -> np.ndarray:
        arrays = self.cache.get(texts, self._extract, progress=progress, desc="SmolLM2")
        return head_inputs(arrays["features"], arrays["hidden"], feature_set)


def train(
    examples: Sequence[Example], *, options: dict[str, Any], seed: int, progress: bool
) -> TrainedModel:
    opts = {**DEFAULTS, **options}
    examples = training_subset(examples, opts["max_train_texts"], seed)
    stats = CachedStatistics(opts)
    texts = [e.text for e in examples]
    stats.inputs(texts, "stats", progress=progress)  # extract (and cache) once
    y = np.array([e.label for e in examples])
    candidates = {name: stats.inputs(texts, name) for name in opts["feature_sets"]}
    best, c, table = select_head(
        candidates,
        y,
        [e.group for e in examples],
        c_grid=opts["C_grid"],
        folds=opts["cv_folds"],
        seed=seed,
    )
    if best != "stats" and "stats" in candidates:
        stats_key = max((k for k in table if k.startswith("stats|")), key=table.__getitem__)
        if table[f"{best}|C={c:g}"] - table[stats_key] < opts["hidden_margin"]:
            best, c = "stats", float(stats_key.partition("|C=")[2])
    serving = {k: opts[k] for k in TRUNCATION}
    names = FEATURES + (HIDDEN_NAMES if best == "stats+hidden" else [])
    head = LogisticHead.fit(
        candidates[best], y, features=names, c=c, extra={"options": serving, "feature_set": best}
    )
    return TrainedModel(
        files={HEAD_FILE: head.to_json()},
        scorer=cached_scorer(head.to_json(), opts),
        extra={
            "kind": "perplexity",
            "training": {
                "C": c,
                "feature_set": best,
                "cv_auroc": table,
                "features": FEATURES,
                "n_train_texts": len(examples),
                **serving,
            },
        },
    )


def cached_scorer(head_json: dict[str, Any], options: dict[str, Any]) -> Callable[..., Any]:
    """P(AI) from an exported head, with features from the training cache (for stacking)."""
    head = LogisticHead.from_json(head_json)
    stats = CachedStatistics({**options, **head.extra.get("options", {})})
    feature_set = head.extra.get("feature_set", "stats")
    return lambda texts: head.predict_proba(stats.inputs(texts, feature_set))
