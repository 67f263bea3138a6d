"""Ensemble against its members (issue 8: "the ensemble must beat its best member or go").

Every model scores the *same* texts, as its verdicts are scored (normalised, over its windows,
``evaluate``'s path): a stratified sample of up to ``--per-cell`` texts per domain and label
(pairs kept) of the corpus's held-out split and of both dev sets, none of which any model was
fitted on. Reported: AUROC per set and domain, and the ensemble's AUROC minus each member's
with a paired bootstrap 95% interval (the same resampled texts for both).

``large-ensemble`` is retired (``models/retired.yaml``); it is loaded from that file beside
the shipped registry. ``small-fusion`` is scored too, as the model that replaced it as the
best out of domain. About 25 minutes on 2 cores at ``--per-cell 30`` (SmolLM2 in
``small-perplexity`` and in the ensemble)::

    python tools/ensemble_members_study.py [--data-dir ../shared/data] [--per-cell 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.models.calibration import load_sets
from deepfake_stream.models.training.curvature import auroc

SETS = (
    "human_ai_corpus.jsonl:test",
    "ood_dev/fastdetect_family.jsonl",
    "ood_dev/outfox.jsonl",
)
ENSEMBLE = "large-ensemble"
OTHERS = ("small-fusion",)
BOOTSTRAP = 1000


def score_all(models: list[str], texts: list[str]) -> dict[str, np.ndarray]:
    from deepfake_stream.consumers.scoring import document_scorer
    from deepfake_stream.core.settings import Settings
    from deepfake_stream.models.evaluation import score_model
    from deepfake_stream.models.registry import load_with_retired

    settings = Settings()
    registry = load_with_retired()
    out = {}
    for model in models:
        scores, _, _, _ = score_model(
            model,
            texts,
            registry=registry,
            scorer=document_scorer(settings.limits.max_windows),
            progress=sys.stderr.isatty(),
        )
        out[model] = np.array(scores)
    return out


def paired_difference(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """AUROC(a) - AUROC(b) and its bootstrap 95% interval over the same resampled texts."""
    diffs = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, len(y), len(y))
        ra, rb = auroc(y[i], a[i]), auroc(y[i], b[i])
        if ra is not None and rb is not None:
            diffs.append(ra - rb)
    full_a, full_b = auroc(y, a), auroc(y, b)
    assert full_a is not None and full_b is not None
    return {
        "difference": round(full_a - full_b, 3),
        "low": round(float(np.quantile(diffs, 0.025)), 3),
        "high": round(float(np.quantile(diffs, 0.975)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    from deepfake_stream.models.registry import load_with_retired

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--per-cell", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    lines = sys.stderr if args.json else sys.stdout
    members = [m.model_id for m in load_with_retired().resolve(ENSEMBLE).members]
    models = [*members, *OTHERS, ENSEMBLE]
    rng = np.random.default_rng(args.seed)
    report: dict[str, Any] = {"per_cell": args.per_cell, "members": members, "sets": {}}
    for data in load_sets([str(args.data_dir / s) for s in SETS], per_cell=args.per_cell):
        y = np.array([e.label for e in data.examples])
        groups = np.array([e.fields.get("domain") or "all" for e in data.examples])
        scores = score_all(models, [e.text for e in data.examples])
        row: dict[str, Any] = {
            "n": len(y),
            "auroc": {m: auroc(y, s) for m, s in scores.items()},
            "domains": {
                g: {m: auroc(y[groups == g], s[groups == g]) for m, s in scores.items()}
                for g in sorted(set(groups.tolist()))
            },
            "ensemble_minus": {
                m: paired_difference(y, scores[ENSEMBLE], scores[m], rng) for m in members
            },
        }
        report["sets"][data.name] = row
        print(f"{data.name} (n={len(y)})", file=lines)
        print("  AUROC", " ".join(f"{m} {v:.3f}" for m, v in row["auroc"].items()), file=lines)
        for g, by_model in row["domains"].items():
            print(f"    {g}", " ".join(f"{m} {v:.3f}" for m, v in by_model.items()), file=lines)
        for m, d in row["ensemble_minus"].items():
            print(
                f"  {ENSEMBLE} - {m}: {d['difference']:+.3f} (95% {d['low']:+.3f} to"
                f" {d['high']:+.3f})",
                file=lines,
            )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
