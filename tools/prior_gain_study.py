"""Does normalising SmolLM2's token log-likelihood by a context-free prior stop the inversion?

Every SmolLM2 statistic tried so far ranks student essays (``outfox``) the wrong way round:
their human essays are *more* predictable than the AI ones. One reading is that simple
vocabulary is predictable whatever the context. This study measures, per text, how much more
likely the model finds each token *in its context* than with no context at all:

- ``log_p``: mean log p(x_t | x_<t) (the language model's log-likelihood);
- ``curvature``: Fast-DetectGPT's analytic curvature (SmolLM2 as sampler and scorer);
- ``prior``: mean log p(x_t | BOS), the model's next-token distribution after the
  beginning-of-text token alone: how common the tokens are, context-free;
- ``gain``: ``log_p - prior``, what context adds;
- ``cache_gain``: ``log_p`` minus the log of a prior that also learns from the text itself:
  each token's count among the tokens before it, smoothed towards ``prior`` (a Dirichlet
  prior of weight ``ALPHA``). What context adds beyond common words *and* beyond repeating
  the text's own words;
- ``word_length``: mean letters per word (no model), for comparison.

It reports each statistic's zero-shot AUROC per set and domain (higher = AI, so below 0.5 is
inverted), then cross-set heads (logistic regression, standardised features) fitted on the
corpus sample plus one dev set and scored on the other. The forward pass is torch fp32 at
``--tokens`` tokens (the features every faster route aims at). A stratified sample of
``--per-cell`` texts per domain and label (fixed seed) keeps it to a few minutes::

    python tools/prior_gain_study.py [--data-dir ../shared/data] [--per-cell 60] [--tokens 128]
        [--by generator] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from fast_tier_study import word_lengths  # tools/ is the script's own directory

from deepfake_stream.models.dataset import Example, load_labelled, select
from deepfake_stream.models.detectors.curvature import token_statistics
from deepfake_stream.models.metrics import auroc
from deepfake_stream.models.smollm import load_smollm

STATISTICS = ["log_p", "curvature", "prior", "gain", "cache_gain", "word_length"]
HEADS = [
    ["gain"],
    ["cache_gain"],
    ["curvature"],
    ["word_length"],
    ["gain", "word_length"],
    ["log_p", "prior"],
]
ALPHA = 10.0
"""Weight of the context-free prior in ``cache_gain``'s in-text prior (in tokens seen)."""


def domain(e: Example) -> str:
    return str(e.fields.get("domain") or e.topic or "-")


def stratified(examples: list[Example], per_cell: int, rng: random.Random) -> list[Example]:
    out: list[Example] = []
    for d in sorted({domain(e) for e in examples}):
        for label in (0, 1):
            cell = [e for e in examples if domain(e) == d and e.label == label]
            out += rng.sample(cell, min(per_cell, len(cell)))
    return out


def group_masks(examples: list[Example], by: str) -> dict[str, np.ndarray]:
    """Per domain: its texts. Per any other field (``generator``): the AI texts with that
    value against every human text of the set, so each group has both labels."""
    if by == "domain":
        return {
            g: np.array([domain(e) == g for e in examples])
            for g in sorted({domain(e) for e in examples})
        }
    values = sorted({str(e.fields.get(by)) for e in examples if e.label == 1})
    return {
        v: np.array([e.label == 0 or str(e.fields.get(by)) == v for e in examples]) for v in values
    }


class Statistics:
    """Per-text statistics from one fp32 SmolLM2 forward pass over the first ``tokens``."""

    def __init__(self, tokens: int) -> None:
        import torch

        lm = load_smollm("cpu")
        self.model, self.tokenizer, self.tokens = lm.model, lm.tokenizer, tokens
        start = self.tokenizer.bos_token_id
        if start is None:
            start = self.tokenizer.eos_token_id
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([[start]])).logits[0, -1].float()
            self.prior = torch.log_softmax(logits, -1)

    def __call__(self, text: str) -> dict[str, float]:
        import torch

        ids = self.tokenizer(text, truncation=True, max_length=self.tokens, return_tensors="pt")
        x = ids["input_ids"]
        with torch.inference_mode():
            logits = self.model(input_ids=x).logits[0, :-1]
            target = x[0, 1:]
            per_token = token_statistics(logits, target)  # the curvature detector's own
        lpx, expected, variance = per_token[:, 0].float(), per_token[:, 1], per_token[:, 2]
        prior = self.prior[target]
        # In-text prior: count of each token among those before it (the first token of the
        # input counts as seen), smoothed towards the context-free prior.
        seen = torch.zeros_like(self.prior)
        seen[x[0, 0]] = 1.0
        cache = torch.empty_like(prior)
        for t, token in enumerate(target.tolist()):
            cache[t] = (seen[token] + ALPHA * self.prior[token].exp()) / (t + 1 + ALPHA)
            seen[token] += 1.0
        return {
            "log_p": float(lpx.mean()),
            "curvature": float((per_token[:, 0] - expected).sum() / variance.sum().sqrt()),
            "prior": float(prior.mean()),
            "gain": float((lpx - prior).mean()),
            "cache_gain": float((lpx - cache.log()).mean()),
            "word_length": float(word_lengths([text])[0, 0]),  # the fast-tier study's mean
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data", type=Path)
    parser.add_argument("--per-cell", type=int, default=60, help="texts per domain and label")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--by", default="domain", help="report groups: domain, or a field of the AI texts"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from tqdm.auto import tqdm

    d: Path = args.data_dir
    rng = random.Random(args.seed)
    corpus = [
        e
        for e in select(load_labelled(d / "human_ai_corpus.jsonl"), "test")
        if (e.fields.get("language") or "en") == "en"  # SmolLM2 is an English model
    ]
    sets = {
        "corpus_test_en": stratified(corpus, 2 * args.per_cell, rng),
        "fastdetect_family": stratified(
            load_labelled(d / "ood_dev" / "fastdetect_family.jsonl"), args.per_cell, rng
        ),
        "outfox": stratified(load_labelled(d / "ood_dev" / "outfox.jsonl"), args.per_cell, rng),
    }
    stats = Statistics(args.tokens)
    lines = sys.stderr if args.json else sys.stdout
    rows: dict[str, list[dict[str, float]]] = {}
    started = time.perf_counter()
    for name, examples in sets.items():
        rows[name] = [stats(e.text) for e in tqdm(examples, desc=name, file=sys.stderr)]
    result: dict[str, Any] = {
        "per_cell": args.per_cell,
        "tokens": args.tokens,
        "seconds": round(time.perf_counter() - started),
        "zero_shot": {},
        "cross_set": {},
    }
    for name, examples in sets.items():
        y = np.array([e.label for e in examples])
        groups = {"all": np.ones(len(y), bool)} | group_masks(examples, args.by)
        table = {
            s: {
                g: round(auroc(y[m], np.array([r[s] for r in rows[name]])[m]), 3)
                for g, m in groups.items()
            }
            for s in STATISTICS
        }
        result["zero_shot"][name] = {"n": len(y), "auroc": table}
        print(f"== {name} (n={len(y)}), zero-shot AUROC, higher = AI", file=lines)
        for s, by in table.items():
            print(f"  {s:12} " + "  ".join(f"{g} {v:.3f}" for g, v in by.items()), file=lines)
    for head in HEADS:
        out = {}
        for test, other in (("outfox", "fastdetect_family"), ("fastdetect_family", "outfox")):
            fit = ["corpus_test_en", other]
            x_fit = np.array([[r[s] for s in head] for n in fit for r in rows[n]])
            y_fit = np.array([e.label for n in fit for e in sets[n]])
            model = make_pipeline(
                StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000)
            ).fit(x_fit, y_fit)
            scores = model.predict_proba(np.array([[r[s] for s in head] for r in rows[test]]))
            out[test] = round(auroc(np.array([e.label for e in sets[test]]), scores[:, 1]), 3)
        result["cross_set"]["+".join(head)] = out
        print(
            f"head {'+'.join(head):18} fit corpus + fastdetect -> outfox {out['outfox']:.3f}   "
            f"fit corpus + outfox -> fastdetect {out['fastdetect_family']:.3f}",
            file=lines,
        )
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
