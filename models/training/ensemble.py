"""Training for kind ``ensemble``: stacking on out-of-fold member predictions.

Each member is re-trained K times through its own trainer (the one its kind declares) on
K-1 topic-grouped folds of the train split and scores the fold it did not see; a logistic
regression on those out-of-fold logits learns the weights. Members keep the
hyper-parameters their committed artifacts chose (C, layers), so the K re-fits skip their
own searches. Serving uses the committed member artifacts, so train the members first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from deepfake_stream.models.dataset import Example
from deepfake_stream.models.detectors.ensemble import DEFAULT_MEMBERS, HEAD_FILE, logit
from deepfake_stream.models.heads import LogisticHead, grouped_folds, select_head, training_subset
from deepfake_stream.models.metrics import auroc
from deepfake_stream.models.training import TrainedModel, trainer_for

DEFAULTS: dict[str, Any] = {
    "members": DEFAULT_MEMBERS,
    "cv_folds": 5,
    "C_grid": [0.1, 1.0, 10.0],
    "max_train_texts": None,
}


def _fixed_options(config: Any, manifest: Any) -> dict[str, Any]:
    """The member's registry options plus the hyper-parameters its artifact settled on."""
    chosen = manifest.extra.get("training", {})
    options = dict(config.options)
    if "C" in chosen:
        options["C_grid"] = [chosen["C"]]
    if "layers" in chosen:
        options["layers"] = chosen["layers"]
    if "feature_set" in chosen:
        options["feature_sets"] = [chosen["feature_set"]]
    return options


def _member_limit(config: Any, opts: dict[str, Any]) -> int | None:
    """How many train texts a member is re-fitted on for the out-of-fold logits.

    Its own ``max_train_texts`` rule, widened to the stacking rows: their costly features
    are extracted for stacking anyway, and both subsets are prefixes of the same seeded
    permutation, so the wider one contains the narrower. Chosen by grouped CV on the train
    split: small-perplexity re-fitted on the 880 stacking rows rather than its 660 gives the
    stacker better-trained perplexity logits (stacker CV AUROC 0.9611 -> 0.9646 on the
    common 660 rows)."""
    own = config.options.get("max_train_texts")
    rows = opts["max_train_texts"]
    if own is None or rows is None:
        return None
    return max(int(own), int(rows))


def _artifact_scorer(config: Any, manifest: Any) -> Callable[[Sequence[str]], np.ndarray]:
    """Score with the committed member artifact: from cached features when the member's kind
    declares a ``member_scorer`` (the heavy ones), otherwise through its detector."""
    from deepfake_stream.models.kinds import build_detector, get_kind, load_attribute

    member_scorer = get_kind(config.kind).member_scorer
    if member_scorer is not None:
        scorer = load_attribute(member_scorer)
        return scorer(manifest.read_json("head.json"), dict(config.options))
    detector = build_detector(config.spec("cpu"))
    asyncio.run(detector.load())
    return lambda texts: np.array([s.score for s in detector.predict_batch(texts)])


def train(
    examples: Sequence[Example],
    *,
    options: dict[str, Any],
    seed: int,
    progress: bool,
    registry: Any = None,
) -> TrainedModel:
    """``registry``: where the members are resolved (the one the ensemble came from; without
    it, the shipped registry)."""
    from deepfake_stream.models.artifacts import artifact_dir, load_verified

    opts = {**DEFAULTS, **options}
    everything = list(examples)
    # Stacking rows: a seeded subset that contains small-perplexity's (the same permutation,
    # a longer prefix), so its cached features cover most of them. Folds are drawn over the
    # whole train split, and each member is re-fitted on everything outside the fold that
    # its own max_train_texts rule, widened to the stacking rows (_member_limit), allows.
    examples = training_subset(everything, opts["max_train_texts"], seed)
    rows = {id(e): i for i, e in enumerate(examples)}
    if registry is None:
        from deepfake_stream.models.registry import load_registry

        registry = load_registry()
    configs = [registry.resolve(m) for m in opts["members"]]
    manifests = [load_verified(artifact_dir(c.artifact or c.model_id)) for c in configs]
    y = np.array([e.label for e in examples])
    labels = np.array([e.label for e in everything])
    groups_all = [e.group for e in everything]
    folds = grouped_folds(labels, groups_all, folds=opts["cv_folds"], seed=seed)
    oof = np.zeros((len(examples), len(configs)))
    with tqdm(total=len(configs) * len(folds), desc="out-of-fold", disable=not progress) as bar:
        for j, (config, manifest) in enumerate(zip(configs, manifests, strict=True)):
            trainer = trainer_for(config.model_id, config.kind)
            member_options = _fixed_options(config, manifest)
            allowed = {
                id(e) for e in training_subset(everything, _member_limit(config, opts), seed)
            }
            for tr, va in folds:
                fit_on = [everything[i] for i in tr if id(everything[i]) in allowed]
                member_options["max_train_texts"] = None  # the subset is already applied
                fitted = trainer(fit_on, options=member_options, seed=seed, progress=False)
                score_on = [everything[i] for i in va if id(everything[i]) in rows]
                oof[[rows[id(e)] for e in score_on], j] = fitted.scorer([e.text for e in score_on])
                bar.update()
    z = logit(oof)
    groups = [e.group for e in examples]
    _, c, table = select_head(
        {"logits": z}, y, groups, c_grid=opts["C_grid"], folds=opts["cv_folds"], seed=seed
    )
    ids = [cfg.model_id for cfg in configs]
    versions = {
        cfg.model_id: m.versioned(cfg.version) for cfg, m in zip(configs, manifests, strict=True)
    }
    head = LogisticHead.fit(
        z, y, features=ids, c=c, extra={"members": ids, "member_versions": versions}
    )
    member_auroc = {m: round(float(auroc(y, oof[:, j]) or 0.0), 5) for j, m in enumerate(ids)}
    scorers = [_artifact_scorer(cfg, m) for cfg, m in zip(configs, manifests, strict=True)]
    exported = LogisticHead.from_json(head.to_json())

    def score(texts: Sequence[str]) -> np.ndarray:
        return exported.predict_proba(logit(np.stack([s(texts) for s in scorers], axis=1)))

    weights = dict(zip(ids, (round(float(w), 4) for w in head.coef / head.scale), strict=True))
    return TrainedModel(
        files={HEAD_FILE: head.to_json()},
        scorer=score,
        extra={
            "kind": "ensemble",
            "training": {
                "C": c,
                "cv_auroc": table,
                "oof_member_auroc": member_auroc,
                "weights_per_logit": weights,
                "members": versions,
                "n_train_texts": len(examples),
            },
        },
    )
