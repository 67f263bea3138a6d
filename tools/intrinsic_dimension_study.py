"""Does the intrinsic dimension of a text's token embeddings separate AI text across domains?

Tulchinskii et al. (NeurIPS 2023, "Intrinsic Dimension Estimation for Robust Detection of
AI-Generated Texts") report that the persistent-homology dimension (PHD) of a text's
contextual token embeddings is lower for AI text than for human text, stable across domains
and generators, and less biased against non-native writers than perplexity: the bias that
inverts SmolLM2's statistics on student essays here. This study measures it zero-shot (nothing
fitted: lower dimension reads as AI) on the corpus's held-out split and both dev sets.

Embeddings: all-MiniLM-L6-v2 (the package's weights, the encoder this project ships), last
layer, the first 512 tokens without [CLS] and [SEP] (the paper used RoBERTa-base, not
available here); or, with ``--encoder smollm2``, SmolLM2-135M's states (layers 15 and 29 of
30, concatenated; torch fp32).

PHD of one text, as in the paper's code: for point counts n from 40 to the text's token
count in 8 steps, the median over 3 random subsets of the total edge length of their
Euclidean minimum spanning tree, L(n); with s the slope of log L against log n, the
dimension is 1 / (1 - s). Texts of fewer than 64 tokens get none (and are left out). Texts
are ranked by s (the same order as the dimension wherever s < 1). Usage::

    python tools/intrinsic_dimension_study.py [--data-dir ../shared/data]
        [--per-label 150] [--encoder minilm|smollm2] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.models.dataset import Example, load_labelled, select
from deepfake_stream.models.metrics import auroc

MIN_TOKENS = 64
MIN_POINTS = 40
STEPS = 8
RERUNS = 3


def distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix of the rows."""
    sq = (points**2).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * points @ points.T, 0.0))


def mst_length(d: np.ndarray) -> float:
    """Total edge length of the minimum spanning tree of distance matrix ``d`` (Prim's)."""
    n = len(d)
    inside = np.zeros(n, dtype=bool)
    inside[0] = True
    best = d[0].copy()
    total = 0.0
    for _ in range(n - 1):
        best[inside] = np.inf
        j = int(np.argmin(best))
        total += float(best[j])
        inside[j] = True
        best = np.minimum(best, d[j])
    return total


def phd_slope(points: np.ndarray, rng: np.random.Generator) -> float:
    """Slope s of log L(n) against log n (the dimension is 1 / (1 - s)), NaN when too few
    points. Ranked by s, not by the dimension: where noise takes s past 1 on a short text
    the dimension jumps to a negative number, while s keeps its order."""
    n = len(points)
    if n < MIN_TOKENS:
        return float("nan")
    d = distances(points)
    sizes = np.unique(np.linspace(MIN_POINTS, n, STEPS).astype(int))
    lengths = []
    for k in sizes:
        runs = []
        for _ in range(RERUNS):
            pick = rng.choice(n, size=k, replace=False)
            runs.append(mst_length(d[np.ix_(pick, pick)]))
        lengths.append(np.median(runs))
    return float(np.polyfit(np.log(sizes), np.log(lengths), 1)[0])


def minilm_states(texts: Sequence[str]) -> list[np.ndarray]:
    """MiniLM's last-layer states of each text's first 512 tokens, without [CLS] / [SEP]."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModel, AutoTokenizer

    from deepfake_stream.models.detectors.embedding import minilm_path

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for text in tqdm(texts, desc="MiniLM states"):
            enc = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
            out.append(model(**enc).last_hidden_state[0, 1:-1].numpy().astype(np.float64))
    return out


def smollm_states(texts: Sequence[str]) -> list[np.ndarray]:
    """SmolLM2's hidden states of each text's first 512 tokens: the outputs of layers 15 and
    29 of its 30, concatenated (torch fp32, the package's weights)."""
    import torch
    from tqdm import tqdm

    from deepfake_stream.models.smollm import load_smollm

    lm = load_smollm("cpu")
    out = []
    with torch.inference_mode():
        for text in tqdm(texts, desc="SmolLM2 states"):
            enc = lm.tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
            states = lm.model(**enc, output_hidden_states=True).hidden_states
            middle, last = states[len(states) // 2][0], states[-2][0]
            out.append(torch.cat([middle, last], -1).numpy().astype(np.float64))
    return out


ENCODERS = {"minilm": minilm_states, "smollm2": smollm_states}


def sample(examples: list[Example], per_label: int) -> list[Example]:
    rng = random.Random(0)
    picked: list[Example] = []
    for label in (0, 1):
        rows = [e for e in examples if e.label == label]
        picked += rng.sample(rows, min(per_label, len(rows)))
    return picked


def cell(examples: list[Example], slopes: np.ndarray) -> dict[str, Any]:
    ok = ~np.isnan(slopes)
    y = np.array([e.label for e in examples])[ok]
    s = slopes[ok]
    return {
        "n": int(ok.sum()),
        "auroc": round(auroc(y, -s), 3),  # lower dimension reads as AI
        "human_median_phd": round(float(1 / (1 - np.median(s[y == 0]))), 2),
        "ai_median_phd": round(float(1 / (1 - np.median(s[y == 1]))), 2),
        "share_past_1": round(float((s >= 1).mean()), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data", type=Path)
    parser.add_argument("--per-label", type=int, default=150, help="texts per label and set")
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default="minilm")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    states = ENCODERS[args.encoder]
    d: Path = args.data_dir
    corpus = select(load_labelled(d / "human_ai_corpus.jsonl"), "test")
    sets = {
        "corpus_test_en": [e for e in corpus if e.language == "en"],
        "fastdetect_family": load_labelled(d / "ood_dev" / "fastdetect_family.jsonl"),
        "outfox": load_labelled(d / "ood_dev" / "outfox.jsonl"),
    }
    lines = sys.stderr if args.json else sys.stdout  # --json: stdout holds only the JSON
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for name, examples in sets.items():
        picked = sample(examples, args.per_label)
        slopes = np.array([phd_slope(p, rng) for p in states([e.text for e in picked])])
        row = results[name] = cell(picked, slopes)
        domains = sorted({str(e.fields.get("domain")) for e in picked})
        if len(domains) > 1:
            row["groups"] = {}
            for g in domains:
                mask = [str(e.fields.get("domain")) == g for e in picked]
                row["groups"][g] = cell(
                    [e for e, m in zip(picked, mask, strict=True) if m], slopes[np.array(mask)]
                )
        print(
            f"{name:18} n {row['n']:4}  AUROC {row['auroc']:.3f}  "
            f"median PHD human {row['human_median_phd']:.2f}  AI {row['ai_median_phd']:.2f}  "
            + "  ".join(f"{g} {c['auroc']:.2f}" for g, c in row.get("groups", {}).items()),
            file=lines,
        )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
