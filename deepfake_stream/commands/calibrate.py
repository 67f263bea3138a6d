"""Choose a model's operating points on labelled texts it was not fitted on; write them.

Scores every --data set once (FILE.jsonl, or FILE.jsonl:test for the held-out side of
train's split, as `evaluate --split test`), then on the pooled human texts chooses the
threshold of each documented operating point: strict (0.1% FPR), balanced (--target-fpr,
default 1%; the default) and sensitive (5%). Each point gets two where the data allow: one
chosen on the human texts of at least min_words, and one for shorter texts chosen on the
short human texts plus the first 50 and 100 words of the others (their scores are noisier).
It measures FPR and TPR at each, fits the confidence bands (score regions whose verdicts
were right >= 99% / >= 90% of the time), measures where quality falls off with length
(AUROC of the first k words: min_words), and writes all of it, with the data it was
measured on, into the model's registry entry. Each threshold is then raised where a domain
of a set (its "domain" field) would have more than --domain-fpr-factor times the target of its
human texts flagged: a pooled 1% can hide one domain's writers at 8%.

With fewer human texts than 1/target, a target FPR cannot be measured, only bounded: the
FPR is reported with its 95% upper bound and n. Figures per set and domain use thresholds
chosen on the same pooled data; the cross-set table chooses them on the other sets only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from deepfake_stream.consumers.scoring import document_scorer
from deepfake_stream.core.settings import Settings
from deepfake_stream.models.calibration import (
    SHORT_PREFIXES,
    Lengths,
    analyse,
    length_sample,
    length_study,
    load_sets,
    model_card,
    prefix,
    registry_fields,
)
from deepfake_stream.models.dataset import DEFAULT_SEED
from deepfake_stream.models.evaluation import score_model
from deepfake_stream.models.operating_points import DOMAIN_FPR_FACTOR, TARGETS
from deepfake_stream.models.registry import DEFAULT_REGISTRY, load_registry
from deepfake_stream.models.registry_write import write_model
from deepfake_stream.text import word_count

HELP = "choose operating points at target FPRs on held-out human texts; write the registry"
SETTINGS = ("limits", "models")
EXAMPLES = """\
  deepfake-stream calibrate --model tiny-tfidf --data human_ai_corpus.jsonl:test \\
      --data ood_dev/fastdetect_family.jsonl --data ood_dev/outfox.jsonl
  deepfake-stream calibrate --model small-perplexity --per-cell 60 \\
      --data human_ai_corpus.jsonl:test --dry-run
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, action="append", metavar="ID", help="model id (repeatable)"
    )
    parser.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="FILE.jsonl[:test]",
        help="labelled JSONL the model was not fitted on (repeatable)",
    )
    parser.add_argument(
        "--target-fpr",
        type=float,
        default=TARGETS["balanced"],
        help="target FPR of the default operating point, balanced (default 0.01)",
    )
    parser.add_argument(
        "--domain-fpr-factor",
        type=float,
        default=DOMAIN_FPR_FACTOR,
        metavar="K",
        help="no domain's human texts flagged at more than K times a point's target, where a "
        f"domain has enough of them to measure it; 0 turns it off (default {DOMAIN_FPR_FACTOR:g})",
    )
    parser.add_argument(
        "--per-cell",
        type=int,
        metavar="N",
        help="stratified subsample: up to N texts per domain and label of each set, pairs kept",
    )
    parser.add_argument(
        "--length-prefixes",
        default="10,25,50,100,150",
        help="word counts of the prefixes scored to find min_words (comma separated)",
    )
    parser.add_argument(
        "--length-sample", type=int, default=400, help="texts scored at each prefix length"
    )
    parser.add_argument(
        "--length-data",
        metavar="FILE.jsonl[:test]",
        help="where the length study samples from (default: the first --data set, e.g. "
        "the held-out split, where the model separates the classes at full length)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="texts per predict_batch")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split and sample seed")
    parser.add_argument("--report", type=Path, help="also write the full report here (JSON)")
    parser.add_argument(
        "--dry-run", action="store_true", help="measure and print, but leave the registry"
    )


def _command_line() -> str:
    return shlex.join(["deepfake-stream", *sys.argv[1:]])


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not 0.0 < args.target_fpr < 1.0:
        print("calibrate: --target-fpr must be in (0, 1)", file=sys.stderr)
        return 2
    if args.domain_fpr_factor < 0:
        print("calibrate: --domain-fpr-factor must be at least 0 (0: no cap)", file=sys.stderr)
        return 2
    registry_path = settings.models.config or DEFAULT_REGISTRY
    prefixes = sorted({int(k) for k in args.length_prefixes.split(",") if k.strip()})
    sets = load_sets(args.data, per_cell=args.per_cell, seed=args.seed)
    examples = [e for s in sets for e in s.examples]
    length_set = (
        load_sets([args.length_data], per_cell=None, seed=args.seed)[0]
        if (args.length_data)
        else sets[0]
    )
    sample = length_sample(length_set.examples, args.length_sample, args.seed)
    texts = [e.text for e in examples] + [e.text for e in sample]
    texts += [prefix(e.text, k) for k in prefixes for e in sample]
    # Short stand-ins: the first SHORT_PREFIXES words of every human text longer than that,
    # (set, prefix words, the text's words) each; those under min_words of texts of at least
    # min_words join the short human texts where short texts' thresholds are chosen.
    words = [np.asarray([word_count(e.text) for e in s.examples]) for s in sets]
    stand_ins = [
        (i, k, int(w), e)
        for i, s in enumerate(sets)
        for e, w in zip(s.examples, words[i], strict=True)
        if e.label == 0
        for k in SHORT_PREFIXES
        if w > k
    ]
    texts += [prefix(e.text, k) for _, k, _, e in stand_ins]
    reports = {}
    for model_id in args.model:
        registry = load_registry(registry_path, default_model=settings.models.default)
        config = registry.resolve(model_id)
        scores, per_s, version, numerics = score_model(
            config.model_id,
            texts,
            registry=registry,
            batch_size=max(1, args.batch_size),
            progress=sys.stderr.isatty(),
            scorer=document_scorer(settings.limits.max_windows),
        )
        per_set, at = [], 0
        for s in sets:
            per_set.append(scores[at : at + len(s.examples)])
            at += len(s.examples)
        rest = scores[at:]
        full = rest[: len(sample)]
        rest = rest[len(sample) :]
        by_prefix = {
            k: rest[i * len(sample) : (i + 1) * len(sample)] for i, k in enumerate(prefixes)
        }
        stand_in_scores = rest[len(prefixes) * len(sample) :]
        length = length_study(sample, full, by_prefix)
        min_words = length["min_words"] if length["min_words"] is not None else config.min_words
        lengths = [
            Lengths(
                words[i],
                min_words,
                np.asarray(
                    [
                        sc
                        for (j, k, w, _), sc in zip(stand_ins, stand_in_scores, strict=True)
                        if j == i and k < min_words <= w
                    ],
                    dtype=np.float64,
                ),
            )
            for i in range(len(sets))
        ]
        report = analyse(
            sets,
            per_set,
            balanced_target=args.target_fpr,
            lengths=lengths,
            domain_factor=args.domain_fpr_factor,
        )
        report["length"] = length
        report["length"]["data"] = length_set.name
        report.update(
            model_version=version,
            numerics=numerics,
            measured_at=datetime.now(UTC).date().isoformat(),
            command=_command_line(),
            texts_per_s=round(per_s, 2),
            data=[
                {
                    "file": s.path.name,
                    "split": s.split,
                    "n": len(s.examples),
                    "n_human": sum(1 for e in s.examples if e.label == 0),
                    "subsample_per_domain_and_label": args.per_cell,
                }
                for s in sets
            ],
        )
        if not args.dry_run:
            write_model(registry_path, config.model_id, registry_fields(report))
        reports[config.model_id] = report
        print(model_card(config.model_id, report))
        print()
    if args.report is not None:
        args.report.write_text(json.dumps(reports, indent=1, sort_keys=True))
    print(json.dumps({m: registry_fields(r) for m, r in reports.items()}, sort_keys=True))
    return 0
