"""Training for kind ``curvature``, and the cross-set study its model card reports.

The expensive part is SmolLM2's forward pass, so what is cached (in
``$DEEPFAKE_STREAM_CACHE/features/``, never in the repository) is each text's per-token
statistics at ``max_tokens`` from the int8 fast path the detector serves with; the
per-text features of any window size or shorter prefix are derived from them in numpy.
The cache key carries the GGUF digest and the quantisation, so fp32 and int8 statistics
never mix; the head records the int8 weights' digest, which the detector checks at load.
(The 2026-12-04 study's cache was filled in length-sorted batches of up to 16 texts, before
serving moved to one text per pass; see the README's small-curvature card.)

Cross-set study (``python -m deepfake_stream.models.training.curvature``): fit on the corpus
plus one dev set, evaluate on the other dev set, in both directions, per domain; the threshold
is chosen on the training side only (out-of-fold scores of its human texts at the target FPR),
so no figure is measured on text the model or its threshold was fitted on. ``--write`` then
fits the shipped head on all of it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.models.dataset import Example
from deepfake_stream.models.detectors.curvature import (
    FEATURE_SETS,
    FEATURE_VERSION,
    FEATURES,
    HEAD_FILE,
    N_TOKEN_STATS,
    text_features,
)
from deepfake_stream.models.heads import LogisticHead, grouped_folds
from deepfake_stream.models.training import TrainedModel

DEFAULTS: dict[str, Any] = {
    "max_chars": 4000,
    "max_tokens": 128,
    "window": 32,
    "quantize": "int8",
    # One text per forward pass: dynamic int8 quantises activations over the whole batch
    # (padding included), so in a batch a text's features depend on its neighbours (scores
    # moved by up to 0.07; curvature correlated 0.76 between batched and alone).
    "max_batch": 1,
    "feature_set": "all",
    "C_grid": [0.01, 0.1, 1.0],
    "cv_folds": 5,
    "num_threads": 1,
}
SERVING = ("max_chars", "max_tokens", "window", "quantize", "max_batch")


class PerTokenCache:
    """Per-token statistics from the serving path (loaded on first miss), cached per text."""

    def __init__(self, options: dict[str, Any]) -> None:
        from deepfake_stream.models.smollm import file_sha256, gguf_path
        from deepfake_stream.models.training.feature_cache import FeatureCache

        self.options = {**DEFAULTS, **options}
        key = {
            "kind": "curvature",
            "per_token": FEATURE_VERSION,
            "gguf": file_sha256(gguf_path())[:16],
            **{k: self.options[k] for k in ("max_chars", "max_tokens", "quantize")},
        }
        self.cache = FeatureCache(key)
        self._stats: Any = None
        self.weights_sha256: str | None = None

    def _extract(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        import torch

        if self._stats is None:
            from deepfake_stream.models.detectors.curvature import load_statistics

            self._stats, self.weights_sha256 = load_statistics(self.options)
        width = int(self.options["max_tokens"])
        out = np.full((len(texts), width, N_TOKEN_STATS), np.nan)
        encoded = self._stats.encode(texts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        with torch.inference_mode():
            for batch in self._stats._sub_batches(order, encoded):
                for i, per_token in zip(
                    batch, self._stats._score([encoded[i] for i in batch]), strict=True
                ):
                    out[i, : len(per_token)] = per_token
        return {"per_token": out}

    def per_token(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self.cache.get(
            texts, self._extract, batch_size=32, progress=progress, desc="SmolLM2 int8"
        )["per_token"]

    def features(
        self,
        texts: Sequence[str],
        *,
        window: int,
        max_tokens: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """:data:`FEATURES` per text; ``max_tokens`` below the cached width scores a prefix
        (causal attention: the first k tokens' statistics do not depend on later ones)."""
        return features_from_per_token(self.per_token(texts, progress=progress), window, max_tokens)

    def digest(self) -> str:
        """The int8 weights digest (loads SmolLM2 when every feature came from the cache)."""
        if self.weights_sha256 is None:
            from deepfake_stream.models.detectors.curvature import load_statistics

            self._stats, self.weights_sha256 = load_statistics(self.options)
        return self.weights_sha256


def features_from_per_token(
    per_token: np.ndarray, window: int, max_tokens: int | None = None
) -> np.ndarray:
    rows = []
    for pt in per_token:
        pt = pt[~np.isnan(pt[:, 0])]
        rows.append(text_features(pt[:max_tokens] if max_tokens else pt, window))
    return np.asarray(rows)


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    *,
    c_grid: Sequence[float],
    folds: int,
    seed: int,
) -> tuple[float, dict[str, float], np.ndarray]:
    """C by pair/topic-grouped CV; returns (C, CV AUROC per C, out-of-fold logits at C)."""
    from sklearn.metrics import roc_auc_score

    splits = grouped_folds(y, groups, folds=folds, seed=seed)
    table, oofs = {}, {}
    for c in c_grid:
        oof = np.zeros(len(y))
        for tr, va in splits:
            oof[va] = LogisticHead.fit(x[tr], y[tr], features=[], c=c).logits(x[va])
        table[f"C={c:g}"] = round(float(roc_auc_score(y, oof)), 5)
        oofs[c] = oof
    best = max(c_grid, key=lambda c: table[f"C={c:g}"])
    return best, table, oofs[best]


def group_of(example: Example) -> str:
    """What must stay on one side of a split: the topic, else the pair (``<pair>-human`` /
    ``<pair>-ai`` share one), else the line."""
    if example.topic:
        return f"topic:{example.topic}"
    if example.id:
        return "pair:" + example.id.rsplit("-", 1)[0]
    return f"line:{example.line}"


def train(
    examples: Sequence[Example], *, options: dict[str, Any], seed: int, progress: bool
) -> TrainedModel:
    """``deepfake-stream train --model small-curvature``: one labelled file's train split."""
    opts = {**DEFAULTS, **options}
    cache = PerTokenCache(opts)
    texts = [e.text for e in examples]
    x = select(cache.features(texts, window=opts["window"], progress=progress), opts["feature_set"])
    y = np.array([e.label for e in examples])
    c, table, _ = fit_head(
        x,
        y,
        [group_of(e) for e in examples],
        c_grid=opts["C_grid"],
        folds=opts["cv_folds"],
        seed=seed,
    )
    head = make_head(x, y, c, opts, cache.digest())
    return TrainedModel(
        files={HEAD_FILE: head.to_json()},
        scorer=cached_scorer(head, cache),
        extra={
            "kind": "curvature",
            "training": {
                "C": c,
                "cv_auroc": table,
                "features": FEATURES,
                "n_train_texts": len(examples),
                **{k: opts[k] for k in SERVING},
            },
        },
    )


def select(x: np.ndarray, feature_set: str) -> np.ndarray:
    return x[:, [FEATURES.index(f) for f in FEATURE_SETS[feature_set]]]


def make_head(
    x: np.ndarray, y: np.ndarray, c: float, opts: dict[str, Any], digest: str
) -> LogisticHead:
    """``x`` holds the columns of ``opts["feature_set"]``; the head names them, and the
    detector reads exactly those."""
    return LogisticHead.fit(
        x,
        y,
        features=FEATURE_SETS[opts["feature_set"]],
        c=c,
        extra={
            "options": {k: opts[k] for k in SERVING},
            "feature_set": opts["feature_set"],
            "weights_sha256": digest,
            "feature_version": FEATURE_VERSION,
        },
    )


def cached_scorer(
    head: LogisticHead, cache: PerTokenCache
) -> Callable[[Sequence[str]], np.ndarray]:
    window = int(head.extra["options"]["window"])
    columns = [FEATURES.index(f) for f in head.features]
    return lambda texts: head.predict_proba(cache.features(texts, window=window)[:, columns])


# ----------------------------------------------------------------------------- study


def sample_sets(paths: dict[str, Path], seed: int = 8) -> dict[str, list[Example]]:
    """Each set in a seeded order of its groups; the corpus (80% AI) keeps per topic its
    human texts and as many AI texts, so the fit is not dominated by one label."""
    from deepfake_stream.models.dataset import load_labelled

    rng = random.Random(seed)
    out: dict[str, list[Example]] = {}
    for name, path in paths.items():
        groups: dict[str, list[Example]] = {}
        for e in load_labelled(path):
            groups.setdefault(group_of(e), []).append(e)
        keys = sorted(groups)
        rng.shuffle(keys)
        picked: list[Example] = []
        for k in keys:
            rows = groups[k]
            humans = [e for e in rows if e.label == 0]
            ais = [e for e in rows if e.label == 1]
            picked += humans + ais[: max(1, len(humans))] if name == "corpus" else rows
        out[name] = picked
    return out


def auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return None if len(set(y.tolist())) < 2 else round(float(roc_auc_score(y, s)), 4)


def rates(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    flagged = s >= threshold
    h, a = y == 0, y == 1
    return {
        "n_human": int(h.sum()),
        "n_ai": int(a.sum()),
        "auroc": auroc(y, s),
        "fpr": None if not h.any() else round(float(flagged[h].mean()), 4),
        "tpr": None if not a.any() else round(float(flagged[a].mean()), 4),
    }


def per_domain(
    examples: Sequence[Example], s: np.ndarray, threshold: float, by: str = "domain"
) -> dict[str, Any]:
    """Rates over all of ``examples`` and per value of their field ``by``."""
    y = np.array([e.label for e in examples])
    dom = np.array([str(e.fields.get(by, "all")) for e in examples])
    return {
        "all": rates(y, s, threshold),
        **{d: rates(y[dom == d], s[dom == d], threshold) for d in sorted(set(dom))},
    }


def study(
    sets: dict[str, list[Example]],
    feats: dict[str, np.ndarray],
    *,
    c_grid: Sequence[float],
    target_fpr: float,
    seed: int,
    feature_set: str = "all",
    by: str = "domain",
) -> dict[str, Any]:
    """Zero-shot statistics per set and domain, then the two cross-set directions."""
    from deepfake_stream.models.operating_points import choose_threshold

    report: dict[str, Any] = {"zero_shot": {}, "cross_set": {}}
    # Sign: a higher curvature and a lower ratio mean "more predictable than expected" = AI.
    for name, ex in sets.items():
        report["zero_shot"][name] = {
            stat: {
                d: v["auroc"]
                for d, v in per_domain(
                    ex, sign * feats[name][:, FEATURES.index(stat)], np.inf, by
                ).items()
            }
            for stat, sign in (
                ("curvature_per_token", 1),
                ("win_curvature_mean", 1),
                ("ratio", -1),
                ("win_ratio_mean", -1),
                ("mean_log_likelihood", 1),
                ("gain", 1),
                ("cache_gain", 1),
                ("win_cache_gain_mean", 1),
            )
        }
    dev = [n for n in sets if n != "corpus"]
    for held in dev:
        fit_names = [n for n in sets if n != held]
        ex = [e for n in fit_names for e in sets[n]]
        x = select(np.vstack([feats[n] for n in fit_names]), feature_set)
        y = np.array([e.label for e in ex])
        c, table, oof = fit_head(x, y, [group_of(e) for e in ex], c_grid=c_grid, folds=5, seed=seed)
        head = LogisticHead.fit(x, y, features=FEATURE_SETS[feature_set], c=c)
        # The threshold of the balanced point from the fitting side's out-of-fold human
        # scores (as probabilities, like the served score).
        from deepfake_stream.models.heads import sigmoid

        threshold = choose_threshold(sigmoid(oof)[y == 0], target_fpr)
        scores = head.predict_proba(select(feats[held], feature_set))
        report["cross_set"][held] = {
            "fitted_on": fit_names,
            "C": c,
            "cv_auroc": table,
            "threshold": threshold,
            "target_fpr": target_fpr,
            "held_out": per_domain(sets[held], scores, threshold, by),
            "coef": dict(zip(head.features, np.round(head.coef, 3).tolist(), strict=True)),
        }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepfake_stream.models.training.curvature",
        description=__doc__.split("\n\n")[2],
    )
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument(
        "--dev", type=Path, action="append", required=True, help="dev set (repeatable)"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULTS["max_tokens"],
        help="tokens scored per text (<= the cached width)",
    )
    parser.add_argument("--window", type=int, default=DEFAULTS["window"])
    parser.add_argument(
        "--quantize",
        choices=["int8", "none"],
        default=DEFAULTS["quantize"],
        help="int8: the CPU route the detector serves; none: fp32, to measure what int8 costs",
    )
    parser.add_argument(
        "--num-threads", type=int, default=DEFAULTS["num_threads"], help="torch threads"
    )
    parser.add_argument(
        "--feature-set", choices=sorted(FEATURE_SETS), default=DEFAULTS["feature_set"]
    )
    parser.add_argument(
        "--by", default="domain", metavar="FIELD", help="group figures by this field (language)"
    )
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--report", type=Path)
    parser.add_argument(
        "--write", metavar="ARTIFACT_DIR", help="fit on all of it and write the artifact here"
    )
    parser.add_argument("--release", default="2026.12.1")
    args = parser.parse_args(argv)
    paths = {"corpus": args.corpus, **{p.stem: p for p in args.dev}}
    sets = sample_sets(paths)
    cache = PerTokenCache(
        {
            "max_tokens": DEFAULTS["max_tokens"],
            "quantize": args.quantize,
            "num_threads": args.num_threads,
        }
    )
    feats = {
        n: cache.features(
            [e.text for e in ex],
            window=args.window,
            max_tokens=args.max_tokens,
            progress=sys.stderr.isatty(),
        )
        for n, ex in sets.items()
    }
    report = study(
        sets,
        feats,
        c_grid=DEFAULTS["C_grid"],
        target_fpr=args.target_fpr,
        seed=args.seed,
        feature_set=args.feature_set,
        by=args.by,
    )
    report.update(
        max_tokens=args.max_tokens,
        window=args.window,
        quantize=args.quantize,
        feature_set=args.feature_set,
        n={n: len(ex) for n, ex in sets.items()},
        command=" ".join(
            ["python -m deepfake_stream.models.training.curvature", *(argv or sys.argv[1:])]
        ),
    )
    if args.write:
        from deepfake_stream.models.artifacts import save_artifact

        ex = [e for n in sets for e in sets[n]]
        x = select(np.vstack([feats[n] for n in sets]), args.feature_set)
        y = np.array([e.label for e in ex])
        c, table, _ = fit_head(
            x, y, [group_of(e) for e in ex], c_grid=DEFAULTS["C_grid"], folds=5, seed=args.seed
        )
        opts = {
            **DEFAULTS,
            "quantize": args.quantize,
            "max_tokens": args.max_tokens,
            "window": args.window,
            "feature_set": args.feature_set,
        }
        head = make_head(x, y, c, opts, cache.digest())
        manifest = save_artifact(
            args.write,
            model_id=Path(args.write).name,
            release=args.release,
            files={HEAD_FILE: head.to_json()},
            extra={
                "kind": "curvature",
                "training": {
                    "C": c,
                    "cv_auroc": table,
                    "n_train_texts": len(ex),
                    "sets": report["n"],
                    **{k: opts[k] for k in SERVING},
                },
                "cross_set": report["cross_set"],
            },
        )
        report["artifact"] = manifest.versioned(args.release)
    text = json.dumps(report, indent=1)
    if args.report:
        args.report.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
