"""Train a trainable detector from labelled JSONL and write its safe artifact.

The data (JSONL: "text", "label" 0 human / 1 AI, optional "id", "topic", "language") is
split once, reproducibly: 80% to train on and 20% held out, stratified by label and grouped
by topic so no topic is on both sides (--seed changes the split). Hyper-parameters are
chosen by cross-validation on the training side only; the held-out metrics are printed and
stored in the artifact's manifest.json. The artifact is JSON/safetensors only, each file
pinned by sha256; the model's version becomes <release>+sha256:<manifest hash>.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepfake_stream.core.settings import Settings
from deepfake_stream.models.dataset import DEFAULT_SEED
from deepfake_stream.models.metrics import metrics_table
from deepfake_stream.models.registry import load_registry
from deepfake_stream.models.training import train

HELP = "train a detector from labelled JSONL and write its safe artifact"
SETTINGS = ("models",)
EXAMPLES = """\
  deepfake-stream train --model tiny-tfidf --data human_ai_corpus.jsonl
  deepfake-stream train --model tiny-tfidf --data mine.jsonl --out /tmp/tfidf-try --seed 7
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="ID", help="registered model id")
    parser.add_argument(
        "--data", required=True, type=Path, metavar="FILE.jsonl", help="labelled JSONL"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="artifact directory (default: models/artifacts/<the model's artifact>, which "
        "is what workers load)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"split and CV seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the result as one JSON line, last"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings.models.config, default_model=settings.models.default)
    result = train(
        args.model,
        args.data,
        registry=registry,
        out_dir=args.out,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    print(f"model     {result['model_id']} {result['model_version']}")
    print(f"artifact  {result['artifact']} ({result['size_bytes'] / 1e6:.2f} MB)")
    print(f"data      {result['n_train']} train / {result['n_test']} held out (topic-grouped)")
    print("held-out metrics:")
    print(metrics_table(result["metrics"]))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0
