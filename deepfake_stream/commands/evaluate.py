"""Score labelled JSONL with a registered model and print detection metrics.

Prints n, AUROC, accuracy, F1 (AI as the positive class, at the model's registry
threshold), TPR at 1% FPR (the highest true-positive rate of any threshold that flags at
most 1% of human texts; no interpolation) and texts/s (scoring only, model load excluded).
The model is loaded exactly as a worker loads it: from its verified artifact, and each text
is scored as its verdict would be (normalised, over windows covering the whole text).

FPR and TPR at the threshold are the shares of human and of AI texts flagged at the model's
default operating point in the registry (or --operating-point), each text at the threshold
its verdict would take (a point may have its own for texts under the model's min_words).
--by FIELD adds the same metrics per value of any field of the rows (domain, generator,
language, ...) under "groups"; a group with one class only reports what is defined (fpr or
tpr) and null AUROC.

--split test scores the 20% that `deepfake-stream train` held out (same topic-grouped split
and --seed); the default, all, scores the whole file, e.g. your own labelled data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepfake_stream.consumers.scoring import document_scorer
from deepfake_stream.core.settings import Settings
from deepfake_stream.models.dataset import DEFAULT_SEED
from deepfake_stream.models.evaluation import evaluate
from deepfake_stream.models.metrics import metrics_table
from deepfake_stream.models.registry import load_registry

HELP = "score labelled JSONL: AUROC, accuracy, F1, TPR@1%FPR, FPR/TPR at threshold, texts/s"
SETTINGS = ("limits", "models")
EXAMPLES = """\
  deepfake-stream evaluate --model tiny-tfidf --data mine.jsonl
  deepfake-stream evaluate --model tiny-tfidf --data human_ai_corpus.jsonl --split test --json
  deepfake-stream evaluate --model tiny-tfidf --data outfox.jsonl --by generator --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="ID", help="registered model id")
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="FILE.jsonl",
        help='labelled JSONL: "text", "label" (0 human, 1 AI)',
    )
    parser.add_argument(
        "--split",
        choices=("all", "test", "train"),
        default="all",
        help="all of the file (default), or the held-out/train side of train's split",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="split seed (as given to train)"
    )
    parser.add_argument(
        "--by", metavar="FIELD", help="also report the metrics per value of this field"
    )
    parser.add_argument(
        "--operating-point",
        metavar="NAME",
        help="measure at this documented operating point (default: the registry's default)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="texts per predict_batch")
    parser.add_argument(
        "--json", action="store_true", help="print the metrics as one JSON object, last line"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings.models.config, default_model=settings.models.default)
    result = evaluate(
        args.model,
        args.data,
        registry=registry,
        split=args.split,
        batch_size=max(1, args.batch_size),
        seed=args.seed,
        progress=sys.stderr.isatty(),
        by=args.by,
        operating_point=args.operating_point,
        scorer=document_scorer(settings.limits.max_windows),
    )
    point = result["operating_point"] or "registry threshold"
    print(f"model  {result['model_id']} {result['model_version']}  ({args.split}: {args.data})")
    print(f"threshold  {result['threshold']}  ({point})")
    if result.get("short_threshold") is not None:
        print(f"           {result['short_threshold']} for texts under min_words")
    print(metrics_table(result))
    for name, metrics in result.get("groups", {}).items():
        print(f"\n{args.by} = {name}")
        print(metrics_table(metrics))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0
