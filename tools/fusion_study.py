"""Fusion study (issue 8): does adding SmolLM2 statistics to ``tiny-tfidf``'s score carry
out of domain, with no weights fitted?

Every SmolLM2 head fitted so far took the direction of the set it was fitted on and lost the
other (README, "Normalising by a prior"). This study fits no weights: per text it takes

- ``tfidf``: ``tiny-tfidf``'s verdict score (normalised, windowed, as ``evaluate`` scores),
  as a logit;
- ``log_p``: SmolLM2's mean token log-probability over the first ``--tokens`` tokens;
- ``gain``: ``log_p`` minus the context-free prior (the model's prediction after the
  document separator);
- ``cache_gain``: ``log_p`` minus the in-text prior (the curvature detector's
  :func:`~deepfake_stream.models.detectors.curvature.cache_gains`),

all read from one forward pass of SmolLM2 on OpenVINO with int8 weights, the route that keeps
fp32's statistics (``tools/cpu_routes_study.py``), with the separator first, as the curvature
detector encodes a text. Every statistic points the same way (higher = AI), so a *fusion* is
their plain sum after standardising each on human texts. Cross-set, each set is scored with
the means and spreads of the human texts of the *other* sets, and its threshold is the 1%-FPR
point of those sets' human sums: nothing is fitted on the set a figure is reported on.
For comparison, ``LR`` rows fit a logistic regression on the other sets instead.

The features are cached under ``$DEEPFAKE_STREAM_CACHE/fusion`` (half an hour for the
three sets on 2 cores). Needs the shared data and the study-only runtimes::

    pip install onnxruntime onnx onnxscript openvino nncf
    python tools/fusion_study.py [--data-dir ../shared/data] [--tokens 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, this folder is on sys.path: the OpenVINO route is the routes study's.
from cpu_routes_study import _logits_module, export_onnx, log_p_and_prior, openvino_route

from deepfake_stream.models.calibration import load_sets
from deepfake_stream.models.training.curvature import auroc, rates

SETS = ("human_ai_corpus.jsonl:test", "ood_dev/fastdetect_family.jsonl", "ood_dev/outfox.jsonl")
STATISTICS = ("tfidf", "log_p", "gain", "cache_gain")
FUSIONS = (
    ("tfidf",),
    ("cache_gain",),
    ("tfidf", "cache_gain"),
    ("tfidf", "log_p"),
    ("tfidf", "gain"),
    ("tfidf", "cache_gain", "log_p"),
)
TARGET_FPR = 0.01


def smollm_statistics(texts: Sequence[str], tokens: int, threads: int) -> dict[str, np.ndarray]:
    """Mean log p, gain and cache_gain of each text, from OpenVINO int8 logits."""
    import torch
    from tqdm.auto import tqdm

    from deepfake_stream.models.detectors.curvature import WindowStatistics, cache_gains
    from deepfake_stream.models.smollm import cache_root, load_smollm

    torch.set_num_threads(threads)
    lm = load_smollm("cpu")
    ids = [
        torch.tensor([row])
        for row in WindowStatistics(lm.model, lm.tokenizer, max_tokens=tokens).encode(texts)
    ]
    onnx32, _ = export_onnx(
        _logits_module(lm.model), ids[0], cache_root() / "onnx-routes", per_channel=True
    )
    route = openvino_route(onnx32, threads, int8=True)
    out: dict[str, list[float]] = {"log_p": [], "gain": [], "cache_gain": []}
    for x in tqdm(ids, desc="SmolLM2 (OpenVINO int8)", unit="text"):
        ll, prior, target = log_p_and_prior(route(x), x)
        out["log_p"].append(float(ll.mean()))
        out["gain"].append(float((ll - prior).mean()))
        out["cache_gain"].append(float(cache_gains(ll, prior, target).mean()))
    return {k: np.array(v) for k, v in out.items()}


def tfidf_logits(texts: list[str]) -> np.ndarray:
    """``tiny-tfidf``'s verdict scores as logits (scored as ``evaluate`` scores them)."""
    from deepfake_stream.consumers.scoring import document_scorer
    from deepfake_stream.core.settings import Settings
    from deepfake_stream.models.evaluation import score_model
    from deepfake_stream.models.registry import load_registry

    settings = Settings()
    scores, _, _, _ = score_model(
        "tiny-tfidf",
        texts,
        registry=load_registry(settings.models.config),
        scorer=document_scorer(settings.limits.max_windows),
        progress=sys.stderr.isatty(),
    )
    p = np.clip(np.array(scores), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def features(spec: str, data_dir: Path, tokens: int, threads: int) -> dict[str, Any]:
    """One set's labels, domains and statistics, cached by set and token count."""
    from deepfake_stream.models.smollm import cache_root

    (data,) = load_sets([str(data_dir / spec)], per_cell=None)
    cache = cache_root() / "fusion" / f"{data.name}-{tokens}.npz"
    if not cache.is_file():
        texts = [e.text for e in data.examples]
        stats = {"tfidf": tfidf_logits(texts), **smollm_statistics(texts, tokens, threads)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **stats)
    with np.load(cache) as z:
        stats = {k: z[k] for k in STATISTICS}
    return {
        "name": data.name,
        "y": np.array([e.label for e in data.examples]),
        "group": [e.fields.get("domain") or e.language or "all" for e in data.examples],
        **stats,
    }


def _matrix(sets: Sequence[dict[str, Any]], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    x = np.vstack([np.column_stack([s[n] for n in names]) for s in sets])
    return x, np.concatenate([s["y"] for s in sets])


def fused_scores(
    fit: Sequence[dict[str, Any]], target: dict[str, Any], names: Sequence[str], how: str
) -> tuple[np.ndarray, np.ndarray]:
    """(the fitting sets' scores, the target's): ``zsum`` standardises each statistic on the
    fitting sets' human texts and adds them; ``lr`` fits a logistic regression there."""
    x, y = _matrix(fit, names)
    xt, _ = _matrix([target], names)
    if how == "zsum":
        mu, sd = x[y == 0].mean(0), x[y == 0].std(0)
        return ((x - mu) / sd).sum(1), ((xt - mu) / sd).sum(1)
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0)
    head = LogisticRegression(class_weight="balanced").fit((x - mu) / sd, y)
    return head.decision_function((x - mu) / sd), head.decision_function((xt - mu) / sd)


def cross_set(sets: Sequence[dict[str, Any]], names: Sequence[str], how: str) -> dict[str, Any]:
    """Each set scored from the other sets only: AUROC and FPR / TPR at their 1%-FPR point,
    for the set and per domain (per language where a set has no domains)."""
    result: dict[str, Any] = {}
    for target in sets:
        fit = [s for s in sets if s is not target]
        s_fit, s_t = fused_scores(fit, target, names, how)
        y_fit = np.concatenate([s["y"] for s in fit])
        threshold = float(np.quantile(s_fit[y_fit == 0], 1 - TARGET_FPR))
        groups = np.array(target["group"])
        result[target["name"]] = {
            **rates(target["y"], s_t, threshold),
            "by_group": {
                g: rates(target["y"][groups == g], s_t[groups == g], threshold)
                for g in sorted(set(groups))
            },
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    sets = [features(spec, args.data_dir, args.tokens, args.threads) for spec in SETS]
    lines = sys.stderr if args.json else sys.stdout
    report: dict[str, Any] = {"tokens": args.tokens, "zero_shot": {}, "cross_set": {}}
    for s in sets:
        report["zero_shot"][s["name"]] = {n: auroc(s["y"], s[n]) for n in STATISTICS}
        print(f"zero-shot {s['name']:30}", report["zero_shot"][s["name"]], file=lines)
    for how in ("zsum", "lr"):
        for names in FUSIONS:
            key = f"{how} {'+'.join(names)}"
            report["cross_set"][key] = row = cross_set(sets, names, how)
            cells = [f"{r['auroc']:.3f} ({r['fpr']:.1%} / {r['tpr']:.1%})" for r in row.values()]
            print(f"{key:32}", " | ".join(cells), file=lines)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
