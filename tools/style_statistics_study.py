"""Style statistics study (issue 8): do plain counts of how a text is written (word length,
sentence-length spread, first person, ...) add to ``small-fusion`` out of domain?

``small-fusion`` sums standardised statistics because every fitted head took the direction of
the set it was fitted on and lost the other (README, "Fusing with tiny-tfidf"). The same
design here, with no model read: per text, ``small-fusion``'s verdict score as served (a logit;
normalised, over windows, cached as the length study caches it) and :data:`STYLE` statistics
of its first 3,000 characters (words are runs of letters and apostrophes; sentences end at
``.``, ``!`` or ``?``).

Each set is scored from the other two only (cross-set): a style statistic joins the sum when,
on *each* of the other sets, it ranks AI above human (or, flipped, below) with AUROC >= 0.55
in the same direction; every term is standardised by the mean and spread of the other sets'
human texts, and the threshold is the 1%-FPR point of their human sums. Nothing is fitted or
chosen on the set a figure is reported on.

Needs the shared data (the first run scores every text with ``small-fusion``: about 12
minutes on 2 cores)::

    python tools/style_statistics_study.py [--data-dir ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, this folder is on sys.path: the verdict scores are the length study's.
from length_threshold_study import scores_for

from deepfake_stream.models.calibration import load_sets
from deepfake_stream.models.training.curvature import auroc, rates

SETS = ("human_ai_corpus.jsonl:test", "ood_dev/fastdetect_family.jsonl", "ood_dev/outfox.jsonl")
MODEL = "small-fusion"
MAX_CHARS = 3000
MIN_AUROC = 0.55
TARGET_FPR = 0.01
STYLE = (
    "word_length",
    "type_token_ratio",
    "sentence_length",
    "sentence_length_cv",
    "comma_rate",
    "apostrophe_rate",
    "first_person_rate",
    "lower_i_rate",
    "lower_sentence_start",
)
WORD = re.compile(r"[A-Za-z']+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def style_statistics(text: str) -> list[float]:
    """:data:`STYLE` of one text's first :data:`MAX_CHARS` characters."""
    text = text[:MAX_CHARS]
    words = WORD.findall(text)
    n = max(len(words), 1)
    lower = [w.lower() for w in words]
    sentences = [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
    lengths = np.array([len(WORD.findall(s)) for s in sentences] or [0], dtype=float)
    return [
        float(np.mean([len(w) for w in words])) if words else 0.0,
        len(set(lower)) / n,
        float(lengths.mean()),
        float(lengths.std() / max(lengths.mean(), 1.0)),
        text.count(",") / n,
        text.count("'") / n,
        sum(w in ("i", "me", "my", "mine") for w in lower) / n,
        sum(w == "i" for w in words) / n,
        float(np.mean([s[0].islower() for s in sentences])) if sentences else 0.0,
    ]


def cross_set(
    data: dict[str, dict[str, Any]], name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Set ``name``'s sums (served score alone, and with the chosen style terms), the
    thresholds from the other sets, and the style statistics chosen on them."""
    others = [o for o in data if o != name]
    chosen, signs = [], []
    for j in range(len(STYLE)):
        a = [auroc(data[o]["y"], data[o]["style"][:, j]) or 0.5 for o in others]
        for sign in (1.0, -1.0):
            if all((x if sign > 0 else 1 - x) >= MIN_AUROC for x in a):
                chosen.append(j)
                signs.append(sign)
    human = np.concatenate([data[o]["terms"][data[o]["y"] == 0] for o in others])
    cols = [0, *[1 + j for j in chosen]]
    orient = np.array([1.0, *signs])
    mean, std = human[:, cols].mean(0), human[:, cols].std(0) + 1e-12

    def sums(terms: np.ndarray, k: int) -> np.ndarray:
        z = (terms[:, cols] - mean) / std * orient
        return np.asarray(z[:, :k].sum(1))

    out, thresholds = [], []
    for k in (1, len(cols)):
        out.append(sums(data[name]["terms"], k))
        thresholds.append(float(np.quantile(sums(human, k), 1 - TARGET_FPR)))
    return np.array(out), np.array(thresholds), np.array(signs), [STYLE[j] for j in chosen]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)

    data: dict[str, dict[str, Any]] = {}
    for spec in SETS:
        (dataset,) = load_sets([str(args.data_dir / spec)], per_cell=None)
        texts = [e.text for e in dataset.examples]
        score = np.clip(scores_for(MODEL, texts), 1e-12, 1 - 1e-12)
        style = np.array([style_statistics(t) for t in texts])
        data[dataset.name] = {
            "y": np.array([e.label for e in dataset.examples]),
            "domain": np.array([e.fields.get("domain") or "all" for e in dataset.examples]),
            "style": style,
            "terms": np.column_stack([np.log(score / (1 - score)), style]),
        }

    report: dict[str, Any] = {"zero_shot": {}, "cross_set": {}}
    for name, d in data.items():
        report["zero_shot"][name] = {
            stat: auroc(d["y"], d["style"][:, j]) for j, stat in enumerate(STYLE)
        }
    for name, d in data.items():
        sums, thresholds, _, chosen = cross_set(data, name)
        rows: dict[str, Any] = {"chosen": chosen}
        for label, s, t in zip(("served", "served+style"), sums, thresholds, strict=True):
            groups = {"all": np.ones(len(s), dtype=bool)} | {
                dom: d["domain"] == dom for dom in sorted(set(d["domain"]))
            }
            rows[label] = {
                g: {k: rates(d["y"][m], s[m], t)[k] for k in ("auroc", "fpr", "tpr")}
                for g, m in groups.items()
            }
        report["cross_set"][name] = rows

    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print("zero-shot AUROC (higher statistic = AI):")
    for name, row in report["zero_shot"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print("cross-set: AUROC (FPR / TPR at the other sets' 1%-FPR threshold)")
    for name, rows in report["cross_set"].items():
        print(f"  {name}: style chosen on the other sets: {', '.join(rows['chosen']) or 'none'}")
        for label in ("served", "served+style"):
            cells = [
                f"{g} {m['auroc']:.3f} ({100 * m['fpr']:.1f}% / {100 * m['tpr']:.1f}%)"
                for g, m in rows[label].items()
            ]
            print(f"    {label:13s} " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
