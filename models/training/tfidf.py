"""Training for kind ``tfidf``: scikit-learn fits, then the model is exported to plain JSON.

Only ``deepfake-stream train`` imports this module; serving
(:mod:`deepfake_stream.models.detectors.tfidf`) never needs scikit-learn. Options come from the
model's registry entry (``options:``) and override :data:`DEFAULTS`. The regularisation
strength ``C`` is chosen by topic-grouped cross-validation on the training split only, so the
held-out split stays unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from deepfake_stream.models.dataset import Example
from deepfake_stream.models.detectors.tfidf import (
    FORMAT,
    MODEL_FILE,
    TOKENIZER,
    TfidfModel,
    prepare,
)
from deepfake_stream.models.metrics import auroc
from deepfake_stream.models.training import TrainedModel

DEFAULTS: dict[str, Any] = {
    # Character n-grams inside word boundaries carry style (punctuation, affixes) across
    # languages and topics; word n-grams add phrasing. Capped and min_df-pruned so the
    # model cannot memorise rare topic words, and the artifact stays small.
    "char_ngram_range": [1, 4],
    "char_max_features": 20_000,
    "word_ngram_range": [1, 2],
    "word_max_features": 10_000,
    "min_df": 3,
    "C_grid": [1.0, 10.0, 100.0],
    "cv_folds": 4,
    "max_iter": 3000,
}


def build_pipeline(options: dict[str, Any], C: float) -> Any:
    """The scikit-learn pipeline whose fitted state :func:`export` turns into JSON."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    common = {"preprocessor": prepare, "lowercase": False, "sublinear_tf": True}
    common["min_df"] = options["min_df"]
    union = FeatureUnion(
        [
            (
                "char_wb",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=tuple(options["char_ngram_range"]),
                    max_features=options["char_max_features"],
                    **common,
                ),
            ),
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    token_pattern=TOKENIZER["word_token"]["python"],
                    ngram_range=tuple(options["word_ngram_range"]),
                    max_features=options["word_max_features"],
                    **common,
                ),
            ),
        ]
    )
    # Balanced weights: the corpus is 80% AI; the registry threshold 0.5 should not be.
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=options["max_iter"])
    return Pipeline([("features", union), ("clf", clf)])


def export(pipeline: Any) -> dict[str, Any]:
    """The fitted pipeline as the JSON payload that
    :class:`~deepfake_stream.models.detectors.tfidf.TfidfModel` scores."""
    coef = pipeline.named_steps["clf"].coef_[0]
    blocks, offset = [], 0
    for name, vec in pipeline.named_steps["features"].transformer_list:
        vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
        width = len(vocab)
        blocks.append(
            {
                "name": name,
                "analyzer": vec.analyzer,
                "ngram_range": list(vec.ngram_range),
                "vocabulary": vocab,
                "idf": vec.idf_.tolist(),
                "coef": coef[offset : offset + width].tolist(),
            }
        )
        offset += width
    if offset != coef.size:
        raise RuntimeError(f"exported {offset} features but the classifier has {coef.size}")
    return {
        "format": FORMAT,
        "tokenizer": TOKENIZER,
        "intercept": float(pipeline.named_steps["clf"].intercept_[0]),
        "blocks": blocks,
    }


def _choose_c(
    texts: list[str], labels: np.ndarray, groups: list[str], opts: dict, seed: int, bar: bool
) -> tuple[float, dict[str, float]]:
    from sklearn.model_selection import StratifiedGroupKFold

    grid = [float(c) for c in opts["C_grid"]]
    if len(grid) == 1:
        return grid[0], {}
    folds = list(
        StratifiedGroupKFold(opts["cv_folds"], shuffle=True, random_state=seed).split(
            texts, labels, groups
        )
    )
    cv: dict[str, float] = {}
    with tqdm(total=len(grid) * len(folds), desc="cross-validating C", disable=not bar) as pb:
        for c in grid:
            scores = []
            for tr, va in folds:
                pipe = build_pipeline(opts, c).fit([texts[i] for i in tr], labels[tr])
                scores.append(auroc(labels[va], pipe.predict_proba([texts[i] for i in va])[:, 1]))
                pb.update()
            cv[f"C={c:g}"] = float(np.mean(scores))
    best = max(grid, key=lambda c: cv[f"C={c:g}"])
    return best, cv


def train(
    examples: Sequence[Example], *, options: dict[str, Any], seed: int, progress: bool
) -> TrainedModel:
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if k in DEFAULTS}}
    texts = [e.text for e in examples]
    labels = np.array([e.label for e in examples])
    C, cv = _choose_c(texts, labels, [e.group for e in examples], opts, seed, progress)
    with tqdm(total=1, desc=f"fitting C={C:g}", disable=not progress) as pb:
        pipeline = build_pipeline(opts, C).fit(texts, labels)
        pb.update()
    payload = export(pipeline)
    model = TfidfModel(payload)
    return TrainedModel(
        files={MODEL_FILE: payload},
        scorer=model.predict_proba,
        extra={
            "kind": "tfidf",
            "training": {
                "C": C,
                "cv_auroc": cv,
                "n_features": model.n_features,
                "options": opts,
            },
        },
    )
