"""Length-aware thresholds study (issue 8): do texts shorter than ``min_words`` need a
threshold of their own?

A model's operating point is one threshold for every length, chosen on pooled human texts
that are mostly long. Below ``min_words`` (150 words for ``small-fusion``) its AUROC falls
(the card's length study) and verdicts say ``confidence: low``, ``too_short``; and the
human texts of the one short domain, PubMedQA's answers (median 51 words), are flagged at
8% at ``balanced`` against at most 1.6% in every other domain.

This study scores every text of the three sets as verdicts are (normalised, windowed), plus
the first 50 and 100 words of every human text of at least ``min_words``, and compares three
rules at the operating point's target FPR:

- ``one``: one threshold, the target-FPR point of the fitting side's human texts (as
  shipped until 2026-12-06);
- ``two``: that point of the fitting side's human texts of at least ``min_words`` for those,
  and for shorter texts the target-FPR point of its short human texts: the ones below
  ``min_words`` and the 50- and 100-word prefixes of the others (shipped 2026-12-06);
- ``capped``: ``two``, each threshold then raised until no domain of a set has more than
  twice the target of the human texts it applies to flagged, where it has enough of them to
  measure that (``calibrate``'s ``--domain-fpr-factor``, shipped since).

Each rule is fitted two ways: on the pooled human texts of all three sets (how ``calibrate``
chooses thresholds: optimistic, the figures are measured on the same texts), and cross-set,
on the other two sets only (the honest one). AUROC does not change: only who is flagged.

Needs the shared data next to the repository; scores are cached under
``$DEEPFAKE_STREAM_CACHE/length_study`` (17 minutes for ``small-fusion`` on 2 cores: 6,839 texts)::

    python tools/length_threshold_study.py [--data-dir ../shared/data] [--model small-fusion]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.consumers.scoring import document_scorer
from deepfake_stream.core.settings import LimitSettings
from deepfake_stream.models.calibration import (
    DataSet,
    Lengths,
    choose_points,
    load_sets,
    point_thresholds,
    prefix,
    set_domains,
)
from deepfake_stream.models.evaluation import score_model
from deepfake_stream.models.registry import load_registry
from deepfake_stream.models.smollm import cache_root
from deepfake_stream.text import word_count

PREFIXES = (50, 100)


def scores_for(model_id: str, texts: list[str]) -> np.ndarray:
    """Verdict scores of ``texts``, cached by model version and the texts themselves."""
    registry = load_registry()
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    path = cache_root() / "length_study" / f"{model_id}-{digest}.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        return np.array(doc["scores"])
    scores, per_s, version, _ = score_model(
        model_id,
        texts,
        registry=registry,
        batch_size=registry.resolve(model_id).max_batch_size or 16,
        progress=sys.stderr.isatty(),
        scorer=document_scorer(LimitSettings().max_windows),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model_version": version, "texts_per_s": per_s, "scores": scores}))
    return np.array(scores)


RULES = ("one", "two", "capped")


def fit(
    labels: np.ndarray,
    scores: np.ndarray,
    lengths: Lengths,
    domains: np.ndarray,
    fpr: float,
) -> dict[str, dict[str, Any]]:
    """Each rule's point from one fitting side, chosen as ``calibrate`` chooses it: ``one``
    threshold, ``two`` (short texts' own), and ``two`` ``capped`` per domain."""
    target = {"point": fpr}
    return {
        "one": choose_points(labels, scores, target)["point"],
        "two": choose_points(labels, scores, target, lengths)["point"],
        "capped": choose_points(labels, scores, target, lengths, domains)["point"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data", type=Path)
    parser.add_argument("--model", default="small-fusion")
    parser.add_argument("--fpr", type=float, default=0.01, help="target FPR (balanced: 0.01)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    d: Path = args.data_dir
    sets: list[DataSet] = load_sets(
        [
            str(d / "human_ai_corpus.jsonl") + ":test",
            str(d / "ood_dev" / "fastdetect_family.jsonl"),
            str(d / "ood_dev" / "outfox.jsonl"),
        ],
        per_cell=None,
    )
    min_words = load_registry().resolve(args.model).min_words
    texts = [e.text for s in sets for e in s.examples]
    # The prefixes: of every human text at least min_words long, per set (for cross-set fits).
    long_humans = [
        [e.text for e in s.examples if e.label == 0 and word_count(e.text) >= min_words]
        for s in sets
    ]
    prefix_texts = [prefix(t, k) for hs in long_humans for k in PREFIXES for t in hs]
    all_scores = scores_for(args.model, texts + prefix_texts)
    per_set, at = [], 0
    for s in sets:
        per_set.append(all_scores[at : at + len(s.examples)])
        at += len(s.examples)
    prefix_scores = []
    for hs in long_humans:
        prefix_scores.append(all_scores[at : at + len(PREFIXES) * len(hs)])
        at += len(PREFIXES) * len(hs)
    labels = [np.array([e.label for e in s.examples]) for s in sets]
    n_words = [np.array([word_count(e.text) for e in s.examples]) for s in sets]
    domains, keyed = set_domains(sets)

    def fit_on(on: list[int]) -> dict[str, dict[str, Any]]:
        lengths = Lengths(
            np.concatenate([n_words[i] for i in on]),
            min_words,
            np.concatenate([prefix_scores[i] for i in on]),
        )
        return fit(
            np.concatenate([labels[i] for i in on]),
            np.concatenate([per_set[i] for i in on]),
            lengths,
            np.concatenate([keyed[i] for i in on]),
            args.fpr,
        )

    lines = sys.stderr if args.json else sys.stdout  # --json: stdout holds only the JSON
    out: dict[str, Any] = {"model": args.model, "min_words": min_words, "target_fpr": args.fpr}
    pooled = fit_on(list(range(len(sets))))
    out["pooled_points"] = pooled
    print(
        f"{args.model}: min_words {min_words}, target FPR {args.fpr:.1%}; pooled thresholds "
        + ", ".join(
            f"{rule} {p['threshold']:.4f}"
            + (f" / short {p['short_threshold']:.4f}" if "short_threshold" in p else "")
            for rule, p in pooled.items()
        ),
        file=lines,
    )
    columns = [f"{k} {rule}" for k in ("FPR", "TPR") for rule in RULES]
    print(
        f"{'fit':6} {'set / domain':34} {'n human':>7} {'short':>6}  "
        + " ".join(f"{c:>10}" for c in columns),
        file=lines,
    )
    for how in ("pooled", "cross"):
        out[how] = {}
        for i, s in enumerate(sets):
            points = pooled if how == "pooled" else fit_on([j for j in range(len(sets)) if j != i])
            own = Lengths(n_words[i], min_words, np.empty(0))
            flags = {
                rule: per_set[i] >= point_thresholds(p, own, per_set[i].size)
                for rule, p in points.items()
            }
            groups = {s.name: np.ones(len(labels[i]), bool)}
            groups.update({f"  {g}": domains[i] == g for g in sorted(set(domains[i]))})
            for name, m in groups.items():
                y = labels[i][m]
                row = {
                    "n_human": int((y == 0).sum()),
                    "short_share": round(float((n_words[i][m] < min_words).mean()), 3),
                    **{
                        f"{k}_{rule}": round(float(flags[rule][m][y == v].mean()), 4)
                        if (y == v).any()
                        else None
                        for k, v in (("fpr", 0), ("tpr", 1))
                        for rule in RULES
                    },
                }
                out[how][name.strip()] = row
                print(
                    f"{how:6} {name:34} {row['n_human']:7} {row['short_share']:6.0%}  "
                    + " ".join(
                        f"{row[f'{k}_{rule}']:10.1%}" for k in ("fpr", "tpr") for rule in RULES
                    ),
                    file=lines,
                )
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
