"""Do a model's scores depend on the CPU's int8 kernels? Score the same texts under MKL and
under oneDNN on this machine, side by side, and compare the scores and the speed.

CTranslate2 picks its int8 matrix-product library once per process (Intel MKL on an Intel
CPU, oneDNN elsewhere; ``CT2_USE_MKL`` overrides it), so each setting runs in a child
process of its own, one after the other, on the same texts (texts/s: scoring only).
Needs the shared data next to the repository::

    python tools/int8_kernels_check.py [--model small-fusion] [--domain news_xsum] [--n 48]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = Path("../shared/data/ood_dev/fastdetect_family.jsonl")


def child(model: str, data: Path, domain: str, n: int) -> dict[str, object]:
    """This process's scores, texts per second and numerics."""
    from deepfake_stream.consumers.scoring import document_scorer
    from deepfake_stream.core.settings import LimitSettings
    from deepfake_stream.models.calibration import load_sets
    from deepfake_stream.models.evaluation import score_model
    from deepfake_stream.models.registry import load_registry

    (examples,) = (s.examples for s in load_sets([str(data)], per_cell=None))
    texts = [e.text for e in examples if e.fields.get("domain") == domain][:n]
    registry, scorer = load_registry(), document_scorer(LimitSettings().max_windows)
    # texts_per_s: scoring only, the model's load not counted
    return score_model(model, texts, registry=registry, progress=False, scorer=scorer)._asdict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small-fusion")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--domain", default="news_xsum")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.data, args.domain, args.n)))
        return 0
    runs = {}
    for use_mkl in ("0", "1"):
        proc = subprocess.run(
            [
                *(sys.executable, __file__, "--child", "--model", args.model),
                *("--data", str(args.data), "--domain", args.domain, "--n", str(args.n)),
            ],
            env={**os.environ, "CT2_USE_MKL": use_mkl},
            capture_output=True,
            text=True,
            check=True,
        )
        runs[use_mkl] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = (np.asarray(runs[k]["scores"]) for k in ("0", "1"))
    for k in ("0", "1"):
        print(f"CT2_USE_MKL={k}: {runs[k]['numerics']}: {runs[k]['texts_per_s']:.2f} texts/s")
    diff = np.abs(a - b)
    ratio = runs["1"]["texts_per_s"] / runs["0"]["texts_per_s"]
    print(
        f"{len(a)} texts ({args.domain}): |score difference| max {diff.max():.3f}, median "
        f"{np.median(diff):.4f}; speed ratio MKL / oneDNN {ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
