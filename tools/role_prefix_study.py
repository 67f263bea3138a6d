"""Role prefix study (issue 8): is a text more likely to SmolLM2-Instruct when framed as its
assistant's answer, the more so when an AI wrote it?

A single-model stand-in for Binoculars' second model: SmolLM2-135M-Instruct was tuned to
write assistant answers, so AI text might gain more log-probability than human text from a
chat-template prefix. Per text (its first 128 tokens, as ``small-fusion`` reads them) the
mean log p of the same tokens after each prefix of :data:`PREFIXES`, from CTranslate2 int8
(its own log-probabilities: a study, not served figures); the statistics are differences
between two prefixes, higher = AI. Zero-shot AUROC, nothing fitted: on a seeded sample of
each set (the corpus's English texts, 100 per label; 150 per label of each dev set).

Needs the shared data; about 9 minutes on 2 cores::

    python tools/role_prefix_study.py [--data-dir ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_stream.models.dataset import load_labelled
from deepfake_stream.models.smollm_ct2 import SEPARATOR, load_text_statistics
from deepfake_stream.models.training.curvature import auroc

MAX_CHARS, MAX_TOKENS = 3000, 128
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
PREFIXES = {
    "separator": SEPARATOR,
    "user": "<|im_start|>user\n",
    "assistant": "<|im_start|>assistant\n",
    "chat": f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWrite a text."
    "<|im_end|>\n<|im_start|>assistant\n",
}
STATISTICS = {  # name: (prefix, minus prefix)
    "log_p": ("separator", None),
    "assistant - separator": ("assistant", "separator"),
    "chat - separator": ("chat", "separator"),
    "user - separator": ("user", "separator"),
    "assistant - user": ("assistant", "user"),
}
SETS = {  # name: (file, rows kept, texts per label)
    "corpus (en)": ("human_ai_corpus.jsonl", lambda e: e.language == "en", 100),
    "fastdetect_family": ("ood_dev/fastdetect_family.jsonl", lambda e: True, 150),
    "outfox": ("ood_dev/outfox.jsonl", lambda e: True, 150),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)

    lm = load_text_statistics(max_chars=MAX_CHARS, max_tokens=MAX_TOKENS)
    tokenizer = lm.tokenizer
    prefixes = {k: tokenizer(p, add_special_tokens=False)["input_ids"] for k, p in PREFIXES.items()}

    def mean_log_p(text: str) -> dict[str, float]:
        ids = tokenizer(text[:MAX_CHARS], add_special_tokens=False)["input_ids"][:MAX_TOKENS]
        out = {}
        for name, prefix in prefixes.items():
            lp = np.asarray(lm.generator.forward_batch([prefix + ids], return_log_probs=True))[0]
            at = np.arange(len(prefix) - 1, len(prefix) + len(ids) - 1)
            out[name] = float(lp[at, ids].astype(np.float64).mean())
        return out

    rng = random.Random(0)
    report: dict[str, Any] = {}
    with ThreadPoolExecutor(lm.parallel) as pool:
        for name, (path, keep, per_label) in SETS.items():
            rows = [e for e in load_labelled(args.data_dir / path) if keep(e)]
            sample = []
            for label in (0, 1):
                side = [e for e in rows if e.label == label]
                rng.shuffle(side)
                sample += side[:per_label]
            means = list(pool.map(lambda e: mean_log_p(e.text), sample))
            y = np.array([e.label for e in sample])
            domain = np.array([e.fields.get("domain") or "all" for e in sample])
            report[name] = {}
            for stat, (a, b) in STATISTICS.items():
                s = np.array([m[a] - (m[b] if b else 0.0) for m in means])
                report[name][stat] = {
                    "all": auroc(y, s),
                    **{d: auroc(y[domain == d], s[domain == d]) for d in sorted(set(domain))},
                }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, stats in report.items():
        for stat, groups in stats.items():
            print(f"{name:18s} {stat:22s} " + "  ".join(f"{g} {v}" for g, v in groups.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
