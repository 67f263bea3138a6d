"""Side by side: ``small-fusion``'s statistics with the served post-processing (each
position's log-sum-exp only, float32 exponentials summed in float64) against a float64
log-softmax of every position, the one before 2026-12-07 (issue 8).

``bench`` runs one code at a time, and on these shared cores two runs drift by up to 20%, so
a 1.2x change needs both in one process: the same texts, the same two single-threaded
replicas, rounds interleaved (old, new, new, old, ...). Prints texts/s per round, the ratio
and the largest difference between the two statistics.

Needs the shared data (about 2 minutes on 2 cores)::

    python tools/log_sum_exp_check.py [--data ../shared/data/ood_dev/fastdetect_family.jsonl]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepfake_stream.models import smollm_ct2
from deepfake_stream.models.dataset import load_labelled

MAX_CHARS, MAX_TOKENS = 3000, 128


def float64_log_p_and_prior(
    logits: np.ndarray, ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The post-processing before 2026-12-07: a float64 log-softmax of every position."""
    lp = smollm_ct2.log_softmax(logits)
    target = np.asarray(ids[1:], dtype=np.int64)
    return lp[np.arange(len(target)), target], lp[0][target], target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=Path("../shared/data/ood_dev/fastdetect_family.jsonl")
    )
    ap.add_argument("--texts", type=int, default=64, help="texts to score")
    ap.add_argument("--every", type=int, default=16, help="take every n-th text of --data")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)

    rows = load_labelled(args.data)
    texts = [e.text for e in rows[:: args.every][: args.texts]]
    lm = smollm_ct2.load_text_statistics(max_chars=MAX_CHARS, max_tokens=MAX_TOKENS)
    lm(texts[:4])  # warm up
    served = smollm_ct2.log_p_and_prior
    codes = {"float64 log-softmax": float64_log_p_and_prior, "log-sum-exp (served)": served}
    speed: dict[str, list[float]] = {name: [] for name in codes}
    stats: dict[str, np.ndarray] = {}
    try:
        for r in range(args.rounds):
            for name in codes if r % 2 == 0 else reversed(codes):
                smollm_ct2.log_p_and_prior = codes[name]  # what TextStatistics calls
                start = time.perf_counter()
                stats[name] = lm(texts)
                speed[name].append(len(texts) / (time.perf_counter() - start))
    finally:
        smollm_ct2.log_p_and_prior = served
    old, new = speed.values()
    print(f"{len(texts)} texts, {args.rounds} rounds, {lm.parallel} replicas")
    for name, per_round in speed.items():
        cells = " ".join(f"{v:.2f}" for v in per_round)
        print(f"  {name:21s} texts/s {cells}  (median {np.median(per_round):.2f})")
    ratios = " ".join(f"{b / a:.2f}" for a, b in zip(old, new, strict=True))
    print(f"  served / float64: {np.median(new) / np.median(old):.2f}x (per round {ratios})")
    diff = np.abs(stats["log-sum-exp (served)"] - stats["float64 log-softmax"]).max(0)
    for name, d in zip(smollm_ct2.TextStatistics.NAMES, diff, strict=True):
        print(f"  largest difference, {name}: {d:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
